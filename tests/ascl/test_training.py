"""Training on the real digits data: robustness is learned, resume is exact, failures are clear."""

import json

import pytest
import torch

from ascl.errors import NonFiniteLossError
from ascl.experiment import run_experiment
from ascl.metric_names import DEPENDS_ON, reported
from ascl.presets import get_preset

QUICK = {"train.epochs": 2, "eval.pgd_steps": 3, "eval.val_steps": 2, "eval.eps_sweep": [], "data.train_subset": 256}


@pytest.mark.slow
def test_adversarial_training_beats_standard_training_at_eps_02(tmp_path):
    """eps 0.2 on digits: standard training collapses; PGD-AT and ASCL (leaked) do not."""
    results = {}
    for name in ("digits-standard", "digits-pgdat", "digits-ascl"):
        config = get_preset(name).with_overrides({"train.epochs": 8, "eval.eps_sweep": [], "eval.checkpoint": "last"})
        results[name] = run_experiment(config, run_dir=tmp_path / name).test
    standard, pgdat, ascl = (results[n]["pgd_acc"] for n in ("digits-standard", "digits-pgdat", "digits-ascl"))
    assert standard < 0.15
    assert pgdat > standard + 0.15
    assert ascl > standard + 0.15
    assert results["digits-ascl"]["clean_acc"] > 0.8


@pytest.mark.slow
def test_ascl_reports_selection_fractions_below_one(tmp_path):
    config = get_preset("digits-ascl-2view").with_overrides(QUICK)
    result = run_experiment(config, run_dir=tmp_path)
    assert 0 < result.positive_fraction < 1
    assert 0 < result.negative_fraction < 1
    epoch = result.history[-1]["train"]
    assert 0 < epoch["pos_frac"] < 1
    assert 0 < epoch["neg_frac"] < 1
    assert {"contrastive", "kl", "ce_adv", "clean_acc", "adv_acc"} <= set(epoch)
    report = json.loads((tmp_path / "report.json").read_text())
    assert len(report["robust_flags"]) == 300


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["digits-ascl", "digits-trades"])
def test_resume_is_exact(tmp_path, preset):
    """N epochs in one go equal N-1 epochs, a stop, and a resume for the last one (CPU)."""
    config = get_preset(preset).with_overrides({**QUICK, "train.epochs": 3})
    straight = run_experiment(config, run_dir=tmp_path / "straight")
    steps = iter(range(10**6))  # 256 images / 64 per batch = 4 steps per epoch: stop as epoch 3 starts
    interrupted = run_experiment(config, run_dir=tmp_path / "resumed", should_stop=lambda: next(steps) >= 8)
    assert (interrupted.stopped, interrupted.epochs_completed) == (True, 2)
    resumed = run_experiment(config, run_dir=tmp_path / "resumed")
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)

    def metrics(history):
        return [(h["epoch"], h["lr"], h["train"], h["val"]) for h in history]

    assert metrics(resumed.history) == metrics(straight.history)
    assert resumed.test["pgd_acc"] == straight.test["pgd_acc"]


def test_cooperative_stop_keeps_the_last_complete_epoch(tmp_path):
    config = get_preset("digits-pgdat").with_overrides({**QUICK, "train.epochs": 3})
    calls = {"n": 0}

    def stop_in_second_epoch():
        calls["n"] += 1
        return calls["n"] > 6  # 256 / 64 = 4 steps per epoch

    result = run_experiment(config, run_dir=tmp_path, should_stop=stop_in_second_epoch)
    assert result.stopped
    assert result.epochs_completed == 1
    assert result.test is None
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 1


def test_non_finite_loss_stops_with_a_clear_error(tmp_path):
    config = get_preset("digits-standard").with_overrides({**QUICK, "optim.lr": 1e30, "train.log_every": 1})
    with pytest.raises(NonFiniteLossError, match=r"optim\.lr"):
        run_experiment(config, run_dir=tmp_path)
    assert not (tmp_path / "last.pt").exists()


def test_resuming_with_other_speed_options_continues_the_run(tmp_path):
    config = get_preset("digits-pgdat").with_overrides({**QUICK, "train.epochs": 1})
    run_experiment(config, run_dir=tmp_path)
    faster = {"train.epochs": 2, "train.cudnn_benchmark": False, "train.channels_last": False, "train.log_every": 3}
    assert len(run_experiment(config.with_overrides(faster), run_dir=tmp_path).history) == 2


def test_resuming_a_different_experiment_is_refused(tmp_path):
    from ascl.errors import CheckpointError

    config = get_preset("digits-pgdat").with_overrides({**QUICK, "train.epochs": 1})
    run_experiment(config, run_dir=tmp_path)
    written = (tmp_path / "config.json").read_text()
    with pytest.raises(CheckpointError, match="different experiment"):
        run_experiment(config.with_overrides({"attack.eps": 0.1, "train.epochs": 2}), run_dir=tmp_path)
    assert (tmp_path / "config.json").read_text() == written  # the run directory is left as it was
    with pytest.raises(CheckpointError, match="does not exist"):
        run_experiment(config, run_dir=tmp_path / "other", resume_from=tmp_path / "missing.pt")


def test_rerunning_a_finished_run_returns_its_result_and_reevaluates_only_for_a_new_eval_config(tmp_path):
    config = get_preset("digits-pgdat").with_overrides({**QUICK, "train.epochs": 1})
    first = run_experiment(config, run_dir=tmp_path)

    def no_training():
        raise AssertionError("a finished run must not train again")

    again = run_experiment(config, run_dir=tmp_path, should_stop=no_training)
    assert again == first
    reevaluated = run_experiment(
        config.with_overrides({"eval.pgd_steps": 1}), run_dir=tmp_path, should_stop=no_training
    )
    assert reevaluated.test["pgd_steps"] == 1
    assert reevaluated.history == first.history


class ThreadsSeen:
    def __init__(self):
        self.threads = set()

    def on_step(self, progress):
        self.threads.add(torch.get_num_threads())

    def on_epoch_end(self, summary):
        self.threads.add(torch.get_num_threads())

    def on_checkpoint(self, path, *, epoch, is_best):
        pass


def test_cpu_threads_apply_during_the_run_and_are_restored(tmp_path):
    torch.set_num_threads(2)
    seen = ThreadsSeen()
    config = get_preset("digits-pgdat").with_overrides({**QUICK, "train.epochs": 1, "cpu_threads": 1})
    run_experiment(config, run_dir=tmp_path, reporter=seen)
    assert seen.threads == {1}
    assert torch.get_num_threads() == 2


class AutotunerSeen:
    def __init__(self):
        self.during_steps = set()

    def on_step(self, progress):
        self.during_steps.add(torch.backends.cudnn.benchmark)

    def on_epoch_end(self, summary):
        pass

    def on_checkpoint(self, path, *, epoch, is_best):
        pass


@pytest.mark.parametrize("enabled", [True, False])
def test_cudnn_autotuner_follows_the_config_during_training_steps_and_is_restored(tmp_path, enabled):
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = not enabled
    try:
        seen = AutotunerSeen()
        overrides = {**QUICK, "train.epochs": 1, "train.log_every": 2, "train.cudnn_benchmark": enabled}
        run_experiment(get_preset("digits-pgdat").with_overrides(overrides), run_dir=tmp_path, reporter=seen)
        assert seen.during_steps == {enabled}
        assert torch.backends.cudnn.benchmark is (not enabled)
    finally:
        torch.backends.cudnn.benchmark = before


def test_history_reports_steady_throughput_and_no_warmup_for_eager_cpu(tmp_path):
    config = get_preset("digits-pgdat").with_overrides({**QUICK, "train.epochs": 1})
    epoch = run_experiment(config, run_dir=tmp_path).history[0]
    assert epoch["warmup_seconds"] == 0.0
    assert epoch["images_per_s"] == pytest.approx(256 / epoch["seconds"], rel=0.05)


@pytest.mark.slow
def test_compiled_training_runs_on_cpu_and_times_its_compilation_apart(tmp_path):
    config = get_preset("digits-ascl").with_overrides({**QUICK, "train.compile": "default"})
    history = run_experiment(config, run_dir=tmp_path).history
    assert history[0]["warmup_seconds"] > 0
    assert history[1]["warmup_seconds"] == 0.0
    assert history[0]["seconds"] > history[0]["warmup_seconds"]


def test_learning_rate_is_one_tensor_updated_in_place_even_after_loading_a_checkpoint():
    """A captured step reads the learning-rate tensor it was captured with: loading optimizer
    state must not replace it, and the schedule must write into it."""
    from ascl.config import OptimConfig
    from ascl.training.optim import build_optimizer, load_optimizer_state, set_learning_rate

    model = torch.nn.Linear(3, 2)
    saved = build_optimizer(model, OptimConfig(lr=0.5), torch.device("cpu"))
    model(torch.ones(1, 3)).sum().backward()
    saved.step()
    optimizer = build_optimizer(model, OptimConfig(lr=0.1), torch.device("cpu"))
    lr = optimizer.param_groups[0]["lr"]
    load_optimizer_state(optimizer, saved.state_dict())
    assert optimizer.param_groups[0]["lr"] is lr
    assert optimizer.state[model.weight]["momentum_buffer"] is not None
    set_learning_rate(optimizer, 0.01)
    assert lr.item() == pytest.approx(0.01)


def test_resuming_a_finished_run_into_a_new_directory_evaluates_its_checkpoint(tmp_path):
    """Retrying a finished job with resume and no new epochs: the checkpoint is adopted, not lost
    ("last.pt does not exist")."""
    config = get_preset("digits-pgdat").with_overrides({**QUICK, "train.epochs": 1})
    first = run_experiment(config, run_dir=tmp_path / "first")
    again = run_experiment(config, run_dir=tmp_path / "again", resume_from=tmp_path / "first" / "last.pt")
    assert again.epochs_completed == 1
    assert not again.stopped
    assert again.test["clean_acc"] == first.test["clean_acc"]
    assert again.best_epoch == first.best_epoch
    a = torch.load(tmp_path / "first" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "again" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    ("preset", "overrides"),
    [
        ("digits-standard", {}),
        ("digits-pgdat", {"eval.pgd_steps": 0}),
        ("digits-trades", {}),
        ("digits-ascl", {}),
        ("digits-ascl", {"objective.smoothness_weight": 0.0}),
        ("digits-scl-at", {"objective.smoothness_weight": 1.0}),
        ("digits-scl-at", {"eval.autoattack": "custom", "eval.pgd_steps": 1}),
    ],
)
def test_a_run_reports_exactly_the_figures_the_service_checks_a_sweep_against(tmp_path, preset, overrides):
    """ascl.metric_names is what a sweep's objective is checked against before any trial runs."""
    quick = {**QUICK, "train.epochs": 1, "data.train_subset": 128, "eval.autoattack_examples": 16}
    config = get_preset(preset).with_overrides({**quick, **overrides})
    result = run_experiment(config, run_dir=tmp_path)
    expected, epoch = reported(config), result.history[0]
    assert (tuple(epoch["train"]), tuple(epoch["val"])) == (expected["train"], expected["val"])
    assert {k for k, v in result.test.items() if k.endswith("_acc") and v is not None} == set(expected["test"])


@pytest.mark.parametrize(
    ("field", "same", "other"),
    [
        ("objective.smoothness_weight", (0.5, 2.0), 0.0),
        ("eval.pgd_steps", (1, 200), 0),
        ("eval.autoattack", ("standard", "custom"), "none"),
    ],
)
def test_what_a_run_reports_changes_only_with_what_depends_on_reads_of_a_field(field, same, other):
    """The sweep check tries one value of each kind DEPENDS_ON tells apart: values of one kind must
    report alike, and the kinds must differ."""
    base = get_preset("digits-ascl")
    first, second = (base.with_overrides({field: value}) for value in same)
    assert reported(first) == reported(second)
    assert reported(first) != reported(base.with_overrides({field: other}))
    reads = DEPENDS_ON[field]
    assert reads(same[0]) == reads(same[1]) != reads(other)
