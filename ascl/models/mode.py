"""A context manager that puts a model in train or eval mode and restores every module's flag."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def model_mode(model: nn.Module, *, training: bool) -> Iterator[nn.Module]:
    previous = [(module, module.training) for module in model.modules()]
    model.train(training)
    try:
        yield model
    finally:
        for module, flag in previous:
            module.training = flag
