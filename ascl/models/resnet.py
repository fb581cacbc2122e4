"""CIFAR ResNet-18 (kuangliu variant: 3x3 stem, no max-pool) and PreAct ResNet-18; h is 512-d."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ascl.models.registry import MODELS
from ascl.models.wrapper import Backbone


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class PreActBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        return self.conv2(F.relu(self.bn2(out))) + shortcut


class ResNet18(Backbone):
    def __init__(self, *, num_classes: int, in_channels: int, preact: bool) -> None:
        super().__init__()
        block = PreActBlock if preact else BasicBlock
        self.preact = preact
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(512 if preact else 64)  # preact: the final BN before pooling
        stages, in_planes = [], 64
        for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stages.append(nn.Sequential(block(in_planes, planes, stride), block(planes, planes, 1)))
            in_planes = planes
        self.layers = nn.Sequential(*stages)
        self.linear = nn.Linear(512, num_classes)
        self.feature_dim = 512

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.preact:
            out = F.relu(self.bn1(self.layers(self.conv1(x))))
        else:
            out = self.layers(F.relu(self.bn1(self.conv1(x))))
        h = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)  # [B, 512], post-ReLU so h >= 0
        return self.linear(h), h


@MODELS.register("resnet18")
def resnet18(*, num_classes: int, in_channels: int) -> Backbone:
    return ResNet18(num_classes=num_classes, in_channels=in_channels, preact=False)


@MODELS.register("preact_resnet18")
def preact_resnet18(*, num_classes: int, in_channels: int) -> Backbone:
    return ResNet18(num_classes=num_classes, in_channels=in_channels, preact=True)
