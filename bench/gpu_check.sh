#!/usr/bin/env bash
# The GPU check in one call: GPU tests, training benchmarks eager and with each fast path, where
# the step's time goes, a real `ascl train` epoch, evaluation speed and precision. Each part is
# time-boxed; a failing part is logged and the others still run; parts that no longer fit the budget
# (540 s: one 600 s device call) are skipped and listed. The parts run in the order below, what the
# code's speed depends on first and the evaluation figures last.
#
#   bench/gpu_check.sh                    # on the GPU machine, from the repository root; files go to $OUT
#   bench/gpu_check.sh --quick            # CPU fall-back: every part a CPU can run, tiny sizes
#   bench/gpu_check.sh --parts compile,authors    # only these parts (names below)
#
# Files (under $OUT, default a temporary directory): results.jsonl (one JSON line per figure),
# status.txt (each part: ok / FAILED / TIMEOUT / SKIPPED and its seconds), gpu_check.log (all output),
# pytest-tests.xml and pytest-compile.xml (the GPU tests' reports: without, then with torch.compile),
# profile-*.txt (the profiler's kernel tables), summary.txt (the table printed last).
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT"
PY="${PYTHON:-python}"
QUICK=0
PARTS="env,tests,train-graph,autotune,authors,graph-compile,profile,epoch,train-eager,autoattack,tests-compile"
PARTS+=",eval-pgd,precision,compile"
# --quick leaves out the parts that compile (minutes of compilation on a CPU) and cuDNN's autotuner
# figure (`autotune`: a CPU has no cuDNN, so it would repeat `train-graph` step for step)
NOT_ON_CPU="graph-compile compile tests-compile autotune"
while (($#)); do
  case "$1" in
    --quick) QUICK=1 ;;
    --parts) PARTS="env,$2"; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
if ((QUICK)); then
  PARTS=",$PARTS,"
  for name in $NOT_ON_CPU; do PARTS="${PARTS//,$name,/,}"; done
  PARTS="${PARTS#,}" PARTS="${PARTS%,}"
fi
# On a CPU (--quick) every part's limit is 4x its GPU limit: the fall-back checks that each part
# runs, and a CPU shared with other work (a CI runner's tests) took 90 s for a 10 s part
LIMIT_SCALE=$((QUICK ? 4 : 1))
BUDGET="${GPU_CHECK_BUDGET_S:-$((540 * LIMIT_SCALE))}"
RESULTS="$OUT/results.jsonl" STATUS="$OUT/status.txt" LOG="$OUT/gpu_check.log"
: >"$RESULTS"; : >"$STATUS"; : >"$LOG"
SCRATCH="$(mktemp -d)"
START=$(date +%s)

if ((QUICK)); then  # CPU: the same parts on a small model and a few images
  DEVICE=cpu MODEL=cnn8 STEPS=2 WARMUP=1 SUITE=quick AUTHORS_BATCH=8 EPOCH_IMAGES=164 EPOCH_BATCH=16 EPOCH_VAL=100 EVAL_N=16 EVAL_STEPS=3
  AA_N=4 AA_FRACTION=0.1 AA_VERSION=custom PREC_EPOCHS=1 PREC_N=20 PROFILE_BATCH=16
else
  DEVICE=cuda MODEL=resnet18 STEPS=12 WARMUP=3 SUITE=gpu AUTHORS_BATCH=128 EPOCH_IMAGES=51000 EPOCH_BATCH=128 EPOCH_VAL=1000 EVAL_N=10000
  EVAL_STEPS=200 AA_N=4096 AA_FRACTION=0.1 AA_VERSION=standard PREC_EPOCHS=8 PREC_N=300 PROFILE_BATCH=512
fi
export PY DEVICE MODEL STEPS WARMUP EPOCH_IMAGES EPOCH_BATCH EPOCH_VAL RESULTS SCRATCH OUT PROFILE_BATCH

train() {  # bench_train.py with this check's device, model, steps and results file
  "$PY" bench/bench_train.py --device "$DEVICE" --model "$MODEL" --steps "$STEPS" --warmup "$WARMUP" \
    --out "$RESULTS" "$@"
}

# part NAME LIMIT_S COMMAND...: run COMMAND for at most LIMIT_S seconds (less if the budget is short)
part() {
  local name=$1 limit=$(($2 * LIMIT_SCALE)); shift 2
  [[ ",$PARTS," == *",$name,"* ]] || return 0
  local left=$((BUDGET - ($(date +%s) - START)))
  if ((left < 15)); then
    echo "$name SKIPPED (budget of ${BUDGET}s spent) 0s" >>"$STATUS"; return 0
  fi
  ((limit > left)) && limit=$left
  echo "=== $name (limit ${limit}s): $*" >>"$LOG"
  local began=$(date +%s) rc
  timeout --kill-after=10 "$limit" bash -c '"$@"' _ "$@" >>"$LOG" 2>&1  # bash -c: parts may be functions
  rc=$?
  local took=$(($(date +%s) - began)) state=ok
  ((rc == 124 || rc == 137)) && state=TIMEOUT
  ((rc != 0 && rc != 124 && rc != 137)) && state="FAILED(rc=$rc)"
  echo "$name $state ${took}s" >>"$STATUS"
  echo "=== $name: $state after ${took}s" >>"$LOG"
}

epoch_of_ascl_train() {  # one real `ascl train` epoch of the paper preset; its history line into results
  "$PY" -m ascl.cli train --preset paper-cifar10-resnet18-ascl --no-progress --run-dir "$SCRATCH/epoch" \
    --set device="$DEVICE" --set model.arch="$MODEL" --set data.dataset=synthetic \
    --set data.synthetic_size="$EPOCH_IMAGES" --set data.val_size="$EPOCH_VAL" --set train.batch_size="$EPOCH_BATCH" \
    --set train.epochs=1 \
    --set train.cuda_graph=true --set eval.pgd_steps=10 --set eval.autoattack=none --set 'eval.eps_sweep=[]' \
    >"$SCRATCH/epoch.json" || return 1
  "$PY" - "$SCRATCH/epoch.json" "$RESULTS" "$((EPOCH_IMAGES - EPOCH_VAL))" <<'EOF'
import json, sys
result = json.load(open(sys.argv[1]))
epoch = result["history"][0]
row = {"bench": "ascl_train_epoch", "device": result["device"], "preset": "paper-cifar10-resnet18-ascl",
       "train_images": int(sys.argv[3]),
       "cuda_graph": True, "seconds": round(epoch["seconds"], 2), "warmup_seconds": round(epoch["warmup_seconds"], 2),
       "images_per_s": round(epoch["images_per_s"], 1), "run_seconds": round(result["seconds"], 1)}
open(sys.argv[2], "a").write(json.dumps(row) + "\n")
print(json.dumps(row))
EOF
}

gpu_tests() {  # gpu_tests REPORT MARKS: the GPU tests pytest's marker expression selects, each named in the
  # log as it ends (the report is written only at the end, and a part may be cut short)
  "$PY" -m pytest --noconftest -p no:cacheprovider -v -rfEs --durations=20 tests/ascl/test_gpu.py -m "$2" \
    --junit-xml="$1"
}

compile_runs() {  # torch.compile's CUDA-graph mode on the recipe and on the shape that crashed before
  train --objective ascl-2view --batch-size 128 --compile reduce-overhead &&
    train --objective pgd_at --batch-size 512 --compile reduce-overhead
}

profiles() {  # the eager step's heaviest kernels, at the two shapes of the targets
  local objective batch
  for objective in pgd_at:$PROFILE_BATCH ascl-2view:$((PROFILE_BATCH / 4)); do
    batch=${objective#*:} objective=${objective%:*}
    "$PY" bench/profile_step.py --device "$DEVICE" --model "$MODEL" --objective "$objective" --batch-size "$batch" \
      --steps 2 --warmup "$WARMUP" --out "$RESULTS" --table "$OUT/profile-$objective-$batch.txt" || return 1
  done
}
export -f train epoch_of_ascl_train gpu_tests compile_runs profiles

part env 30 "$PY" -c "
import importlib, torch
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())
if torch.cuda.is_available(): print(torch.cuda.get_device_name(0), torch.cuda.mem_get_info())
for m in ('pyautoattack', 'sklearn', 'tqdm', 'matplotlib', 'pytest', 'numpy'):
    try: importlib.import_module(m); print(m, 'ok')
    except ImportError as e: print(m, 'MISSING', e)
"
part tests 150 gpu_tests "$OUT/pytest-tests.xml" "not compiles"
part train-graph 90 train --suite "$SUITE" --cuda-graph
# the same with cuDNN's heuristics instead of its autotuner (train.cudnn_benchmark, on by default)
part autotune 90 train --suite "$SUITE" --cuda-graph --set train.cudnn_benchmark=false
part authors 45 "$PY" bench/bench_authors_step.py --device "$DEVICE" --model "$MODEL" --batch-size "$AUTHORS_BATCH" \
  --steps "$STEPS" --out "$RESULTS"
# the fastest path measured: Inductor's kernels inside the captured step, at the three target shapes
part graph-compile 240 train --suite "$SUITE" --cuda-graph --compile default
part profile 60 profiles
part epoch 90 epoch_of_ascl_train
part train-eager 80 train --suite "$SUITE"
# AutoAttack's cost, measured anew (the other evaluation figures below were measured at this evaluation
# code): a tenth of each attack's budget on a batch as large as a 10,000-image evaluation's, scaled up
# (at 500 images per batch the time per example was that of a batch 16x smaller than such a run's)
part autoattack 110 "$PY" bench/bench_eval.py autoattack --device "$DEVICE" --model "$MODEL" --examples "$AA_N" \
  --budget-fraction "$AA_FRACTION" --version "$AA_VERSION" --precision tf32 --out "$RESULTS"
# compiling every objective under every mode took over 300 s on an H100: this part gets what is left
# of the budget, or the whole call alone (`--parts tests-compile`, GPU_CHECK_BUDGET_S=560)
part tests-compile 540 gpu_tests "$OUT/pytest-compile.xml" "compiles"
# the other evaluation figures last: they were measured at this evaluation code (bench/results/README.md)
part eval-pgd 110 "$PY" bench/bench_eval.py pgd --device "$DEVICE" --model "$MODEL" --examples "$EVAL_N" \
  --steps "$EVAL_STEPS" --precision tf32 bf16 --out "$RESULTS"
part precision 60 "$PY" bench/bench_eval.py precision --device "$DEVICE" --epochs "$PREC_EPOCHS" --examples "$PREC_N" \
  --out "$RESULTS"
part compile 150 compile_runs

"$PY" bench/gpu_check_summary.py "$OUT" | tee "$OUT/summary.txt"
echo "files: $OUT"
rm -rf "$SCRATCH"
