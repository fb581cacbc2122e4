"""WideResNet-34-10 and 28-10 as in the TRADES code (dropout 0); h is 640-d after BN-ReLU-pool."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ascl.models.registry import MODELS
from ascl.models.wrapper import Backbone


class WideBlock(nn.Module):
    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.equal_in_out = in_planes == out_planes
        self.shortcut = None if self.equal_in_out else nn.Conv2d(in_planes, out_planes, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        return self.conv2(F.relu(self.bn2(out))) + shortcut


class WideResNet(Backbone):
    def __init__(self, *, depth: int, widen: int, num_classes: int, in_channels: int) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n+4 (got {depth})")
        n = (depth - 4) // 6
        widths = (16, 16 * widen, 32 * widen, 64 * widen)
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        stages = []
        for i, stride in enumerate((1, 2, 2)):
            blocks = [
                WideBlock(widths[i] if j == 0 else widths[i + 1], widths[i + 1], stride if j == 0 else 1)
                for j in range(n)
            ]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], num_classes)
        self.feature_dim = widths[3]
        for module in self.modules():  # the TRADES initialisation
            if isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                module.weight.data.normal_(0, math.sqrt(2.0 / fan_out))
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.data.fill_(1)
                module.bias.data.zero_()
            elif isinstance(module, nn.Linear):
                module.bias.data.zero_()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = F.relu(self.bn(self.stages(self.conv1(x))))
        h = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)  # [B, 640] for widen 10
        return self.fc(h), h


@MODELS.register("wrn34_10")
def wrn34_10(*, num_classes: int, in_channels: int) -> Backbone:
    return WideResNet(depth=34, widen=10, num_classes=num_classes, in_channels=in_channels)


@MODELS.register("wrn28_10")
def wrn28_10(*, num_classes: int, in_channels: int) -> Backbone:
    return WideResNet(depth=28, widen=10, num_classes=num_classes, in_channels=in_channels)
