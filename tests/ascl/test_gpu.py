"""CUDA paths: bf16 autocast, channels_last, torch.compile in every mode, the step captured as one
CUDA graph. Run on a GPU machine (`pytest --noconftest tests/ascl/test_gpu.py`), skipped elsewhere."""

import math

import pytest
import torch

from ascl.config import DataConfig
from ascl.data import build_data
from ascl.experiment import run_experiment
from ascl.presets import get_preset
from ascl.runtime import epoch_generator
from ascl.training.assembly import build_training
from ascl.training.callbacks import never_stop
from ascl.training.loop import EpochPlan, train_epoch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
CUDA = torch.device("cuda")

OBJECTIVES = {
    "standard": ("digits-standard", {}),
    "pgd_at": ("digits-pgdat", {}),
    "trades": ("digits-trades", {}),
    "ascl": ("digits-ascl", {}),
    "ascl-2view": ("digits-ascl-2view", {"train.post_step_bn_forwards": True}),
    "scl_at": ("digits-scl-at", {"optim.lr": 0.001}),  # unnormalised SupCon at tau 0.07 diverges on noise at 0.05
}
SPEEDS = {  # fast paths: (train.compile, train.cuda_graph)
    "eager": ("none", False),
    "compile-default": ("default", False),
    "compile-reduce-overhead": ("reduce-overhead", False),
    "compile-max-autotune": ("max-autotune", False),
    "cuda-graph": ("none", True),
    "cuda-graph+compile-default": ("default", True),
}


def synthetic(batch_size, steps):
    return build_data(DataConfig(dataset="synthetic", synthetic_size=batch_size * steps + 1, val_size=1), CUDA)


def config_for(objective, speed, *, batch_size=32, arch="cnn8", **extra):
    preset, own = OBJECTIVES[objective]
    compile_mode, cuda_graph = SPEEDS[speed]
    return get_preset(preset).with_overrides(
        {
            "device": "cuda",
            "model.arch": arch,
            "data.crop_padding": 4,
            "data.hflip": True,
            "train.batch_size": batch_size,
            "train.compile": compile_mode,
            "train.cuda_graph": cuda_graph,
            "train.log_every": 10**6,
            **own,
            **extra,
        }
    )


def losses_of(config, steps, model=None):
    """The loss of each of `steps` optimizer steps, run by the library's epoch loop."""
    data = synthetic(config.train.batch_size, steps)
    training = build_training(config, data, CUDA, model=model)
    generator = epoch_generator(config.seed, 0, CUDA)
    losses = []

    class Every:
        def on_step(self, progress):
            losses.append(progress.metrics["loss"])

        def on_epoch_end(self, summary):
            pass

        def on_checkpoint(self, path, *, epoch, is_best):
            pass

    plan = EpochPlan(epoch=0, epochs=1, steps_per_epoch=steps, optim=config.optim, log_every=1)
    batches = training.epoch_batches(data.train, generator)
    train_epoch(training, batches, plan, generator=generator, reporter=Every(), should_stop=never_stop)
    return losses, training


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()


def _marked(speed):
    """Fast paths that compile are marked: compilation takes minutes on a GPU."""
    return pytest.param(speed, marks=[pytest.mark.compiles] if SPEEDS[speed][0] != "none" else [])


@pytest.mark.parametrize("speed", [_marked(speed) for speed in sorted(SPEEDS)])
def test_every_objective_trains_under_every_fast_path(speed):
    """Each objective calls the model its own way (no-grad natural pass, KL target, two views,
    post-step forwards); one model serves them all so that each mode compiles once."""
    model = None
    for objective in sorted(OBJECTIVES):
        config = config_for(objective, speed, **{"model.feat_dim": 64})
        losses, training = losses_of(config, steps=4, model=model)
        model = training.model
        assert len(losses) == 4, objective
        assert all(math.isfinite(loss) for loss in losses), (objective, losses)
        assert training.step.warmup_steps == 0, objective  # compiled / captured by now


@pytest.fixture
def deterministic_cudnn():
    """cuDNN's default backward kernels are not bitwise deterministic, and PGD's sign() turns one
    rounding difference into another adversarial example: two runs then drift apart step by step
    (on an H100 in fp32, a BatchNorm running mean 2% apart after six steps in one run of three)."""
    saved = torch.backends.cudnn.deterministic
    torch.backends.cudnn.deterministic = True
    yield
    torch.backends.cudnn.deterministic = saved


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_captured_step_equals_eager_step(precision, deterministic_cudnn):
    """Same seed, same data, same starts: the replayed graph computes what the eager step computes
    (the first two steps are eager in both runs: the capture's warm-up). The fidelity of the step
    itself (attack, masks, loss) is pinned by the CPU tests of the same code."""
    # the autotuner off too: the training loop turns it on by default, and with it cuDNN may time
    # its way to another (deterministic) algorithm in each run
    eager_config = config_for(
        "ascl-2view",
        "eager",
        arch="resnet18",
        batch_size=64,
        **{"train.precision": precision, "train.cudnn_benchmark": False},
    )
    captured_config = eager_config.with_overrides({"train.cuda_graph": True})
    eager, eager_training = losses_of(eager_config, steps=6)
    captured, captured_training = losses_of(captured_config, steps=6)
    tolerance = 2e-2  # bf16's, in both precisions
    assert captured == pytest.approx(eager, rel=tolerance)
    captured_state = captured_training.model.state_dict()
    for name, value in eager_training.model.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(captured_state[name], value, rtol=tolerance, atol=tolerance, msg=name)


@pytest.mark.compiles
def test_pgd_at_at_batch_512_under_reduce_overhead_does_not_reuse_overwritten_outputs():
    """The reported crash: ResNet-18, PGD-AT, batch 512, compile reduce-overhead."""
    losses, _ = losses_of(config_for("pgd_at", "compile-reduce-overhead", arch="resnet18", batch_size=512), steps=4)
    assert all(math.isfinite(loss) for loss in losses)


def test_paper_recipe_runs_end_to_end_with_the_captured_step(tmp_path):
    config = get_preset("paper-cifar10-resnet18-ascl").with_overrides(
        {
            "device": "cuda",
            "data.dataset": "synthetic",
            "data.synthetic_size": 2048,
            "data.val_size": 256,
            "train.epochs": 2,
            "train.cuda_graph": True,
            "eval.pgd_steps": 5,
            "eval.val_steps": 2,
            "eval.autoattack": "none",
        }
    )
    result = run_experiment(config, run_dir=tmp_path)
    first, second = result.history
    assert math.isfinite(second["train"]["loss"])
    assert 0 < result.positive_fraction <= 1
    assert first["warmup_seconds"] > 0
    assert second["warmup_seconds"] == 0.0
    assert second["images_per_s"] > 0


@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16"])
def test_evaluation_runs_in_each_precision_and_restores_tf32(tmp_path, precision):
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    config = config_for("pgd_at", "eager", **{"train.epochs": 1, "eval.pgd_steps": 3, "eval.precision": precision})
    config = config.with_overrides({"data.dataset": "digits", "data.crop_padding": 1, "data.hflip": False})
    result = run_experiment(config, run_dir=tmp_path)
    assert result.test["precision"] == precision
    assert 0 <= result.test["pgd_acc"] <= result.test["clean_acc"]
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == before


def test_attack_stays_in_ball_under_bf16_autocast():
    from ascl.attacks import Pgd
    from ascl.config import AttackConfig, ModelConfig
    from ascl.models import build_model

    model = (
        build_model(ModelConfig(arch="resnet18"), num_classes=10, in_channels=3, mean=(0.5,) * 3, std=(0.25,) * 3)
        .cuda()
        .to(memory_format=torch.channels_last)
    )
    x = torch.rand(64, 3, 32, 32, device="cuda")
    y = torch.randint(0, 10, (64,), device="cuda")
    attack = Pgd(AttackConfig(eps=8 / 255, step_size=2 / 255, steps=10), torch.bfloat16)
    x_adv = attack(model, x, y)
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6
    assert all(p.grad is None for p in model.parameters())
