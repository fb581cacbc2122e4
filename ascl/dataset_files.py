"""Where each torchvision dataset keeps its files under `data.data_dir`. Torch-free, so that a
service can tell at submission that a dataset is missing instead of failing at run time."""

from __future__ import annotations

from pathlib import Path

REQUIRED_FILES: dict[str, tuple[str, ...]] = {
    "cifar10": ("cifar-10-batches-py",),
    "cifar100": ("cifar-100-python",),
    "svhn": ("train_32x32.mat", "test_32x32.mat"),
    "mnist": ("MNIST/raw",),
}


def missing_files(dataset: str, data_dir: Path) -> list[str]:
    """The files `dataset` needs that are not under `data_dir` (none for bundled or synthetic data)."""
    return [name for name in REQUIRED_FILES.get(dataset, ()) if not (data_dir / name).exists()]
