"""Data-parallel training on CPU: two gloo workers spawned here stand in for a launcher such as Ray
Train, which initialises the process group before calling the library."""

import json
import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from ascl.data import build_data
from ascl.experiment import run_experiment
from ascl.models import RobustClassifier
from ascl.models.wrapper import Backbone, projection_head
from ascl.presets import get_preset
from ascl.runtime import epoch_generator
from ascl.training.assembly import build_training

pytestmark = pytest.mark.slow
CPU = torch.device("cpu")
QUICK = {"eval.pgd_steps": 2, "eval.val_steps": 1, "eval.eps_sweep": [], "data.train_subset": 256}


class NoBatchNorm(Backbone):
    """Without BatchNorm a worker's slice is normalised as in the whole batch, so the two-worker
    step must equal the one-worker step exactly (up to summation order)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3), nn.ReLU())
        self.linear = nn.Linear(16, 10)
        self.feature_dim = 16

    def forward(self, x):
        h = self.features(x).mean(dim=(2, 3))
        return self.linear(h), h


def first_step(config):
    """(loss, gradients) of the first optimizer step, from this process's view."""
    torch.set_num_threads(1)
    data = build_data(config.data, CPU)
    torch.manual_seed(0)
    backbone = NoBatchNorm()
    model = RobustClassifier(backbone, mean=(0.5,), std=(0.5,), head=projection_head("linear", 16, 8))
    training = build_training(config, data, CPU, model=model)
    generator = epoch_generator(config.seed, 0, CPU)
    x, y = next(training.epoch_batches(data.train, generator))
    output = training.run_step(x, y, generator)
    return output.loss.item(), {name: p.grad.clone() for name, p in training.model.named_parameters()}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(target, world, *args):
    port = free_port()
    context = mp.spawn(_entry, args=(world, port, target, *args), nprocs=world, join=False)
    deadline = time.monotonic() + 240
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the workers did not finish: a collective is waiting on a worker that left")


def _entry(rank, world, port, target, *args):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        target(rank, *args)
    finally:
        dist.destroy_process_group()


def _save_first_step(rank, config_dict, out):
    from ascl.config import ExperimentConfig

    loss, grads = first_step(ExperimentConfig.from_dict(config_dict))
    torch.save({"loss": loss, "grads": grads}, Path(out) / f"rank{rank}.pt")


def recipe(scope, batch_size):
    return get_preset("digits-ascl-2view").with_overrides(
        {**QUICK, "train.batch_size": batch_size, "objective.contrastive_scope": scope, "device": "cpu"}
    )


@pytest.mark.parametrize("scope", ["global", "worker"])
def test_two_workers_at_half_the_batch_take_the_one_worker_step(tmp_path, scope):
    """2 workers x 32 images (x 2 views) against 1 worker x 64: the averaged loss and the DDP-averaged
    gradients equal the single worker's when the contrastive loss is over the global batch, and
    differ when each worker contrasts only its own share."""
    single_loss, single_grads = first_step(recipe(scope, 64))
    spawn(_save_first_step, 2, recipe(scope, 64).to_dict(), str(tmp_path))
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    loss = sum(r["loss"] for r in ranks) / 2
    grads = ranks[0]["grads"]
    assert all(torch.equal(grads[name], ranks[1]["grads"][name]) for name in grads)  # DDP averaged them
    if scope == "global":
        assert loss == pytest.approx(single_loss, rel=1e-5)
        for name, grad in single_grads.items():
            torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=1e-6)
    else:
        assert abs(loss - single_loss) > 1e-4


class Calls:
    def __init__(self):
        self.steps = self.epochs = self.checkpoints = 0

    def on_step(self, progress):
        self.steps += 1

    def on_epoch_end(self, summary):
        self.epochs += 1

    def on_checkpoint(self, path, *, epoch, is_best):
        self.checkpoints += 1


def _train_stop_resume(rank, config_dict, run_dir, out):
    from ascl.config import ExperimentConfig

    torch.set_num_threads(1)
    config = ExperimentConfig.from_dict(config_dict)
    calls = Calls()
    checks = iter(range(10**6))
    # only rank 0's answer counts: rank 1 would never stop on its own
    stop = (lambda: next(checks) >= 2) if rank == 0 else (lambda: False)  # checks: epoch 1 steps 0, 2; epoch 2 step 0
    first = run_experiment(config, run_dir=Path(run_dir), reporter=calls, should_stop=stop)
    second = run_experiment(config, run_dir=Path(run_dir), reporter=calls)
    summary = {
        "first": [first.stopped, first.epochs_completed],
        "second": [second.stopped, second.epochs_completed, second.test is not None],
        "calls": [calls.steps, calls.epochs, calls.checkpoints],
    }
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(summary))


def test_rank_zero_decides_stops_writes_and_reports_and_both_resume(tmp_path):
    config = get_preset("digits-ascl").with_overrides({**QUICK, "train.epochs": 2, "train.log_every": 2})
    spawn(_train_stop_resume, 2, config.to_dict(), str(tmp_path / "run"), str(tmp_path))
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2))
    assert rank0["first"] == rank1["first"] == [True, 1]  # both stopped at epoch 2's first check
    assert rank0["second"] == [False, 2, True]  # resumed from rank 0's checkpoint and evaluated
    assert rank1["second"] == [False, 2, False]  # trained, left the evaluation to rank 0
    assert rank1["calls"] == [0, 0, 0]
    assert rank0["calls"][1] == 2
    assert json.loads((tmp_path / "run" / "report.json").read_text())["examples"] == 300
