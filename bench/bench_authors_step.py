"""A same-run anchor for the recipe's speed: the authors' training step for the paper recipe
(`ascl_pgd_2trans`, docs/method.md), emulated with this library's ResNet-18 and loss functions
but with the authors' loop and numerics: fp32, NCHW, an attack whose `backward()` also computes
the parameter gradients it throws away, one extra forward after the attack, the contrastive loss
in fp64, and the two post-step logging forwards. It is an emulation, not their code.

    python bench/bench_authors_step.py --batch-size 128 --out bench/results/<device>.jsonl

"images/s" counts every view, as bench_train.py does (batch 128 x 2 views = 256 per step).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.nn.functional as F
from figures import emit

from ascl.config import ModelConfig
from ascl.data.sources import CIFAR10_MEAN, CIFAR10_STD
from ascl.losses import ascl_contrastive_loss, trades_kl
from ascl.models import RobustClassifier, build_model

EPS, STEP, STEPS = 0.031, 0.007, 10


def authors_step(model: RobustClassifier, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    model.train()
    x_adv = (x + torch.empty_like(x).uniform_(-EPS, EPS)).clamp(0, 1)
    for _ in range(STEPS):
        x_adv.requires_grad_(True)
        F.cross_entropy(model(x_adv)[0], y, reduction="sum").backward()  # parameter gradients too
        assert x_adv.grad is not None
        x_adv = x_adv.detach() + STEP * x_adv.grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - EPS), x + EPS).clamp(0, 1)
    with torch.no_grad():
        model(x_adv)  # the forward after the attack loop
    optimizer.zero_grad()
    logits_nat, z_nat = model(x)
    logits_adv, z_adv = model(x_adv)
    preds = torch.cat([logits_nat, logits_adv]).argmax(1)
    contrastive = ascl_contrastive_loss(
        torch.cat([z_nat, z_adv]).double(),
        torch.cat([y, y]),
        preds,
        neg_type="leaked",
        distance="linf",
        temperature=0.2,
        normalize=True,
    )
    loss = contrastive + 2.0 * trades_kl(logits_nat, logits_adv, reduction="mean") + F.cross_entropy(logits_adv, y)
    loss.backward()
    optimizer.step()
    with torch.no_grad():  # the two logging forwards
        model(x)
        model(x_adv)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=128, help="images per view (2 views are stacked)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", help="append the JSON line to this file too")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=args.model), num_classes=10, in_channels=3, mean=CIFAR10_MEAN, std=CIFAR10_STD)
    model = model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    views = 2 * args.batch_size
    x = torch.rand(views, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device).repeat(2)
    for _ in range(args.warmup):  # torch's default math settings, as their code runs unchanged
        authors_step(model, optimizer, x, y)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        authors_step(model, optimizer, x, y)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    row = {
        "bench": "authors_step_emulation",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "model": args.model,
        "batch_size": args.batch_size,
        "images_per_step": views,
        "precision": "fp32",
        "steps": args.steps,
        "seconds": round(seconds, 3),
        "images_per_s": round(args.steps * views / seconds, 1),
    }
    emit(row, args.out)


if __name__ == "__main__":
    sys.exit(main())
