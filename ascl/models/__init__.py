"""Models: a registry of backbones plus `build_model`, which wraps one with normalisation and a head."""

from __future__ import annotations

from ascl.config import ModelConfig
from ascl.models import resnet, small_cnn, wide_resnet  # noqa: F401  (registers the architectures)
from ascl.models.registry import MODELS
from ascl.models.wrapper import LogitsOnly, RobustClassifier, projection_head

__all__ = ["MODELS", "LogitsOnly", "RobustClassifier", "build_model"]


def build_model(
    config: ModelConfig, *, num_classes: int, in_channels: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> RobustClassifier:
    backbone = MODELS.get(config.arch)(num_classes=num_classes, in_channels=in_channels)
    head = projection_head(config.head, backbone.feature_dim, config.feat_dim)
    return RobustClassifier(backbone, mean=mean, std=std, head=head)
