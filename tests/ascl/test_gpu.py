"""CUDA paths (bf16 autocast, channels_last, torch.compile): run on a GPU machine, skipped elsewhere."""

import pytest
import torch

from ascl.experiment import run_experiment
from ascl.presets import get_preset

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.parametrize("compile_mode", ["none", "reduce-overhead"])
def test_ascl_two_view_trains_on_cuda_in_bf16(tmp_path, compile_mode):
    config = get_preset("paper-cifar10-resnet18-ascl").with_overrides(
        {
            "device": "cuda",
            "data.dataset": "synthetic",
            "data.synthetic_size": 2048,
            "data.val_size": 256,
            "train.epochs": 2,
            "train.batch_size": 128,
            "train.compile": compile_mode,
            "eval.pgd_steps": 5,
            "eval.val_steps": 2,
            "eval.autoattack": "none",
        }
    )
    result = run_experiment(config, run_dir=tmp_path)
    last = result.history[-1]["train"]
    assert torch.isfinite(torch.tensor(last["loss"]))
    assert 0 < result.positive_fraction <= 1
    assert result.history[-1]["images_per_s"] > 0


def test_attack_stays_in_ball_under_bf16_autocast():
    from ascl.attacks import Pgd
    from ascl.config import ModelConfig
    from ascl.models import build_model

    model = (
        build_model(ModelConfig(arch="resnet18"), num_classes=10, in_channels=3, mean=(0.5,) * 3, std=(0.25,) * 3)
        .cuda()
        .to(memory_format=torch.channels_last)
    )
    x = torch.rand(64, 3, 32, 32, device="cuda")
    y = torch.randint(0, 10, (64,), device="cuda")
    x_adv = Pgd(norm="linf", eps=8 / 255, step_size=2 / 255, steps=10, autocast_dtype=torch.bfloat16)(model, x, y)
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6
    assert all(p.grad is None for p in model.parameters())
