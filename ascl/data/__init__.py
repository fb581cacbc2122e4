"""Data on the device: uint8 splits kept resident, batches drawn by index, augmentation on the device.

Every supported dataset fits in GPU memory as uint8 (CIFAR-10 train is 150 MB), so there is no
DataLoader: an epoch is a `randperm` over the resident tensor. The validation split is carved from
the training set with a fixed generator and used for checkpoint selection, never the test set.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ascl.config import DataConfig
from ascl.data.augment import random_crop_flip
from ascl.data.sources import Split, load_raw

__all__ = ["DataBundle", "Split", "build_data", "eval_batches", "train_batches"]

VAL_SPLIT_SEED = 12345


@dataclass(frozen=True, slots=True)
class DataBundle:
    train: Split
    val: Split
    test: Split
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def in_channels(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.train.images.shape[1:]
        return int(c), int(h), int(w)


def build_data(config: DataConfig, device: torch.device) -> DataBundle:
    raw = load_raw(config)
    train, val = raw.train, raw.val
    if val is None:
        if config.val_size >= len(train):
            raise ValueError(f"data.val_size {config.val_size} leaves no training data ({len(train)} images)")
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(VAL_SPLIT_SEED))
        val, train = train.take(order[: config.val_size]), train.take(order[config.val_size :])
    train, test = train.head(config.train_subset), raw.test.head(config.test_subset)

    def to(split: Split) -> Split:
        return Split(split.images.to(device), split.labels.to(device))

    return DataBundle(
        train=to(train), val=to(val), test=to(test), num_classes=raw.num_classes, mean=raw.mean, std=raw.std
    )


def train_batches(
    split: Split,
    *,
    batch_size: int,
    views: int,
    drop_last: bool,
    padding: int,
    hflip: bool,
    generator: torch.Generator,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled, augmented batches: x float [views·B, C, H, W] in [0, 1] stacked [view1; view2], y [views·B]."""
    n = len(split)
    order = torch.randperm(n, device=split.labels.device, generator=generator)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        index = order[start : start + batch_size]
        images, labels = split.images[index], split.labels[index]
        stacked = torch.cat(
            [random_crop_flip(images, padding=padding, hflip=hflip, generator=generator) for _ in range(views)]
        )
        yield stacked.float().div_(255.0), labels.repeat(views)


def eval_batches(split: Split, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for start in range(0, len(split), batch_size):
        yield split.images[start : start + batch_size].float().div_(255.0), split.labels[start : start + batch_size]
