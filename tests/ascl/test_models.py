"""Model registry contracts: every registered architecture builds, returns (logits, z) and trains."""

import pytest
import torch

from ascl.config import MODELS as CATALOGUE
from ascl.config import ModelConfig
from ascl.models import MODELS, build_model

INPUTS = {"cnn8": (1, 8), "cnn28": (1, 28)}
FEATURES = {"resnet18": 512, "preact_resnet18": 512, "wrn34_10": 640, "wrn28_10": 640, "cnn28": 1024, "cnn8": 128}


def test_registry_matches_the_torch_free_catalogue():
    assert MODELS.names() == sorted(CATALOGUE)


@pytest.mark.parametrize("arch", MODELS.names())
@pytest.mark.parametrize("feat_dim", [-1, 32])
def test_shapes_and_backward(arch, feat_dim):
    channels, size = INPUTS.get(arch, (3, 32))
    model = build_model(
        ModelConfig(arch=arch, feat_dim=feat_dim),
        num_classes=7,
        in_channels=channels,
        mean=(0.5,) * channels,
        std=(0.25,) * channels,
    )
    x = torch.rand(2, channels, size, size)
    logits, z = model(x)
    assert logits.shape == (2, 7)
    assert z.shape == (2, feat_dim if feat_dim > 0 else FEATURES[arch])
    (logits.sum() + z.sum()).backward()
    assert model.backbone.conv1.weight.grad is not None if hasattr(model.backbone, "conv1") else True


def test_head_only_sees_the_contrastive_path():
    model = build_model(ModelConfig(arch="cnn8", feat_dim=16), num_classes=10, in_channels=1, mean=(0.5,), std=(0.5,))
    logits, _ = model(torch.rand(4, 1, 8, 8))
    logits.sum().backward()
    assert all(p.grad is None for p in model.head.parameters())  # the classifier reads h, not z


def test_mlp_head_option():
    model = build_model(
        ModelConfig(arch="cnn8", feat_dim=16, head="mlp"), num_classes=10, in_channels=1, mean=(0.5,), std=(0.5,)
    )
    assert isinstance(model.head, torch.nn.Sequential)
    assert model(torch.rand(2, 1, 8, 8))[1].shape == (2, 16)


def test_normalisation_is_inside_the_model():
    model = build_model(ModelConfig(arch="cnn8", feat_dim=-1), num_classes=10, in_channels=1, mean=(0.25,), std=(0.5,))
    model.eval()
    x = torch.rand(2, 1, 8, 8)
    direct, _ = model.backbone((x - 0.25) / 0.5)
    assert torch.allclose(model(x)[0], direct)
