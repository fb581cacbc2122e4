"""Data: the fixed digits split, device-side augmentation, two views, clear missing-data errors."""

import pytest
import torch
import torch.nn.functional as F

from ascl.config import DataConfig
from ascl.data import build_data, train_batches
from ascl.data.augment import random_crop_flip
from ascl.dataset_sizes import training_images
from ascl.errors import DataNotFoundError

CPU = torch.device("cpu")


def test_digits_split_is_fixed_stratified_and_disjoint():
    first = build_data(DataConfig(dataset="digits"), CPU)
    second = build_data(DataConfig(dataset="digits"), CPU)
    assert (len(first.train), len(first.val), len(first.test)) == (1197, 300, 300)
    assert torch.equal(first.test.images, second.test.images)
    assert first.test.labels.bincount().min() >= 29  # stratified: ~30 of each class
    as_rows = {
        (*tuple(img.flatten().tolist()), int(lbl))
        for img, lbl in zip(first.test.images, first.test.labels, strict=True)
    }
    train_rows = {
        (*tuple(img.flatten().tolist()), int(lbl))
        for img, lbl in zip(first.train.images, first.train.labels, strict=True)
    }
    assert len(as_rows & train_rows) < 5  # the digits set has a few exact duplicate images, no more
    assert first.train.images.dtype == torch.uint8
    assert first.image_shape == (1, 8, 8)


def test_validation_split_is_carved_from_training_not_test():
    data = build_data(DataConfig(dataset="synthetic", synthetic_size=200, val_size=50), CPU)
    assert (len(data.train), len(data.val)) == (150, 50)
    train_rows = {tuple(x.flatten().tolist()) for x in data.train.images}
    assert not train_rows & {tuple(x.flatten().tolist()) for x in data.val.images}


def test_crop_is_a_window_of_the_zero_padded_image():
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(1, 256, (32, 3, 8, 8), dtype=torch.uint8)
    out = random_crop_flip(x, padding=2, hflip=False, generator=generator)
    padded = F.pad(x, (2, 2, 2, 2))
    for i in range(32):
        windows = [padded[i, :, dy : dy + 8, dx : dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)


def test_flip_flips_about_half():
    x = torch.arange(64, dtype=torch.uint8).view(1, 1, 8, 8).repeat(400, 1, 1, 1)
    out = random_crop_flip(x, padding=0, hflip=True, generator=torch.Generator().manual_seed(0))
    flipped = sum(torch.equal(o, x[0].flip(2)) for o in out)
    assert 150 < flipped < 250
    assert all(torch.equal(o, x[0]) or torch.equal(o, x[0].flip(2)) for o in out)


def test_two_views_stack_independent_augmentations_with_repeated_labels():
    data = build_data(DataConfig(dataset="digits"), CPU)
    x, y = next(
        train_batches(
            data.train,
            batch_size=16,
            views=2,
            drop_last=True,
            padding=1,
            hflip=False,
            generator=torch.Generator().manual_seed(0),
        )
    )
    assert x.shape == (32, 1, 8, 8)
    assert x.dtype == torch.float32
    assert x.min() >= 0.0
    assert x.max() <= 1.0
    assert torch.equal(y[:16], y[16:])
    assert not torch.equal(x[:16], x[16:])


def test_missing_torchvision_data_names_the_directory_and_the_fix(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"data.download=true") as info:
        build_data(DataConfig(dataset="cifar10", data_dir=str(tmp_path / "nowhere")), CPU)
    assert "nowhere" in str(info.value)


@pytest.mark.parametrize(
    "config",
    [
        DataConfig(dataset="digits", val_size=0, train_subset=None),
        DataConfig(dataset="digits", train_subset=1000),
        DataConfig(dataset="synthetic", synthetic_size=300, val_size=40),
        DataConfig(dataset="synthetic", synthetic_size=300, val_size=40, train_subset=100),
    ],
)
def test_the_training_images_a_config_is_checked_against_are_those_its_data_has(config):
    expected = training_images(
        config.dataset, val_size=config.val_size, train_subset=config.train_subset, synthetic_size=config.synthetic_size
    )
    assert len(build_data(config, CPU).train) == expected
