"""Dataset sources → uint8 image tensors [N, C, H, W] and int64 labels [N], plus their statistics.

torchvision datasets are read from the data directory and downloaded only when asked
(`data.download`). `digits` is scikit-learn's bundled 1,797 real 8x8 handwritten digits, shipped
with the package, so it needs no files and no network. `synthetic` is random data for benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ascl.config import DataConfig
from ascl.dataset_sizes import DIGITS_TEST, DIGITS_VAL
from ascl.errors import DataNotFoundError

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
SVHN_MEAN, SVHN_STD = (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)
IDENTITY_MEAN, IDENTITY_STD = (0.0,), (1.0,)  # the authors do not normalise MNIST


@dataclass(frozen=True, slots=True)
class Split:
    images: torch.Tensor  # uint8 [N, C, H, W]
    labels: torch.Tensor  # int64 [N]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, index: torch.Tensor) -> Split:
        return Split(self.images[index], self.labels[index])

    def head(self, n: int | None) -> Split:
        return self if n is None else Split(self.images[:n], self.labels[:n])


@dataclass(frozen=True, slots=True)
class RawDataset:
    train: Split
    test: Split
    val: Split | None  # a fixed split shipped with the source (digits); else carved from train
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


def load_raw(config: DataConfig) -> RawDataset:
    loaders = {
        "cifar10": _cifar10,
        "cifar100": _cifar100,
        "svhn": _svhn,
        "mnist": _mnist,
        "digits": _digits,
        "synthetic": _synthetic,
    }
    return loaders[config.dataset](config)


def _torchvision(
    config: DataConfig,
    build: type,
    *,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    classes: int,
    split_kw: tuple[dict[str, object], dict[str, object]],
) -> RawDataset:
    root = Path(config.data_dir).expanduser()
    splits = []
    for kw in split_kw:
        try:
            dataset = build(root=str(root), download=config.download, **kw)
        except RuntimeError as error:  # torchvision: "Dataset not found or corrupted"
            raise DataNotFoundError(
                f"{config.dataset} was not found in {root} ({error}). Put the files there, point "
                f"data.data_dir at them, or pass --set data.download=true to download them."
            ) from None
        splits.append(_to_split(dataset))
    return RawDataset(train=splits[0], test=splits[1], val=None, num_classes=classes, mean=mean, std=std)


def _to_split(dataset: object) -> Split:
    data = np.asarray(dataset.data)  # type: ignore[attr-defined]
    labels = getattr(dataset, "targets", None)
    if labels is None:
        labels = dataset.labels  # type: ignore[attr-defined]  # SVHN
    if data.ndim == 3:  # MNIST: [N, H, W]
        data = data[:, None]
    elif data.shape[-1] == 3:  # CIFAR: [N, H, W, C]
        data = data.transpose(0, 3, 1, 2)
    return Split(torch.from_numpy(np.ascontiguousarray(data)), torch.as_tensor(np.asarray(labels), dtype=torch.int64))


def _cifar10(config: DataConfig) -> RawDataset:
    from torchvision.datasets import CIFAR10

    return _torchvision(
        config, CIFAR10, mean=CIFAR10_MEAN, std=CIFAR10_STD, classes=10, split_kw=({"train": True}, {"train": False})
    )


def _cifar100(config: DataConfig) -> RawDataset:
    from torchvision.datasets import CIFAR100

    return _torchvision(
        config,
        CIFAR100,
        mean=CIFAR100_MEAN,
        std=CIFAR100_STD,
        classes=100,
        split_kw=({"train": True}, {"train": False}),
    )


def _svhn(config: DataConfig) -> RawDataset:
    from torchvision.datasets import SVHN

    return _torchvision(
        config, SVHN, mean=SVHN_MEAN, std=SVHN_STD, classes=10, split_kw=({"split": "train"}, {"split": "test"})
    )


def _mnist(config: DataConfig) -> RawDataset:
    from torchvision.datasets import MNIST

    return _torchvision(
        config, MNIST, mean=IDENTITY_MEAN, std=IDENTITY_STD, classes=10, split_kw=({"train": True}, {"train": False})
    )


DIGITS_SPLIT_SEED = 0  # fixed, so every run and every service job sees the same split


def _digits(_: DataConfig) -> RawDataset:
    """scikit-learn's digits: values 0..16 scaled to uint8 0..255; stratified 1197/300/300 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.rint(bunch.images / 16.0 * 255.0).astype(np.uint8)[:, None]  # [1797, 1, 8, 8]
    index = np.arange(len(images))
    rest, test = train_test_split(index, test_size=DIGITS_TEST, stratify=bunch.target, random_state=DIGITS_SPLIT_SEED)
    train, val = train_test_split(
        rest, test_size=DIGITS_VAL, stratify=bunch.target[rest], random_state=DIGITS_SPLIT_SEED
    )

    def split(ix: np.ndarray) -> Split:
        return Split(torch.from_numpy(images[ix]), torch.from_numpy(bunch.target[ix].astype(np.int64)))

    return RawDataset(train=split(train), test=split(test), val=split(val), num_classes=10, mean=(0.5,), std=(0.5,))


def _synthetic(config: DataConfig) -> RawDataset:
    """CIFAR-shaped random images; labels carry no signal. For throughput benchmarks only."""
    generator = torch.Generator().manual_seed(0)
    n = config.synthetic_size

    def split(size: int) -> Split:
        images = torch.randint(0, 256, (size, 3, 32, 32), dtype=torch.uint8, generator=generator)
        return Split(images, torch.randint(0, 10, (size,), generator=generator))

    return RawDataset(
        train=split(n), test=split(max(n // 8, 2)), val=None, num_classes=10, mean=CIFAR10_MEAN, std=CIFAR10_STD
    )
