"""Small CNNs: the TRADES SmallCNN for 28x28 inputs and a BatchNorm CNN for 8x8 digits."""

from __future__ import annotations

import torch
from torch import nn

from ascl.models.registry import MODELS
from ascl.models.wrapper import Backbone


class SmallCnn28(Backbone):
    """TRADES SmallCNN. As the authors, z is the flattened 1024-d conv output, not the 200-d layer."""

    def __init__(self, *, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )  # 28 → 26 → 24 → 12 → 10 → 8 → 4: [B, 64, 4, 4]
        last = nn.Linear(200, num_classes)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.classifier = nn.Sequential(
            nn.Linear(1024, 200), nn.ReLU(), nn.Dropout(0.5), nn.Linear(200, 200), nn.ReLU(), last
        )
        self.feature_dim = 1024

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.flatten(self.features(x), 1)
        return self.classifier(h), h


class SmallCnn8(Backbone):
    """For 8x8 grayscale digits; BatchNorm so the attack's BN mode matters as it does for ResNets."""

    def __init__(self, *, num_classes: int, in_channels: int) -> None:
        super().__init__()

        def conv(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        self.features = nn.Sequential(
            *conv(in_channels, 32), *conv(32, 64), nn.MaxPool2d(2), *conv(64, 128), nn.AdaptiveAvgPool2d(1)
        )
        self.linear = nn.Linear(128, num_classes)
        self.feature_dim = 128

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.flatten(self.features(x), 1)  # [B, 128]
        return self.linear(h), h


@MODELS.register("cnn28")
def cnn28(*, num_classes: int, in_channels: int) -> Backbone:
    return SmallCnn28(num_classes=num_classes, in_channels=in_channels)


@MODELS.register("cnn8")
def cnn8(*, num_classes: int, in_channels: int) -> Backbone:
    return SmallCnn8(num_classes=num_classes, in_channels=in_channels)
