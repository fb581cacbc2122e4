"""How many images each dataset's training split holds, torch-free, so that a config whose training
set would hold no image, or less than one batch, is refused when it is made (at a job's submission)
instead of when its data is loaded."""

from __future__ import annotations

TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000, "svhn": 73_257, "mnist": 60_000}  # torchvision's
DIGITS_IMAGES, DIGITS_VAL, DIGITS_TEST = 1_797, 300, 300  # a fixed split: data.val_size does not apply


def training_images(dataset: str, *, val_size: int, train_subset: int | None, synthetic_size: int) -> int:
    """The images training sees: the training split less the validation images carved from it,
    cut to train_subset."""
    if dataset == "digits":
        images = DIGITS_IMAGES - DIGITS_VAL - DIGITS_TEST
    else:
        images = (synthetic_size if dataset == "synthetic" else TRAIN_IMAGES[dataset]) - val_size
    return min(images, train_subset) if train_subset is not None else images


def carves_validation(dataset: str) -> bool:
    """Whether the validation images come out of the training split (data.val_size of them)."""
    return dataset != "digits"
