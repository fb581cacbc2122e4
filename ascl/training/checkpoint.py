"""Atomic checkpoints: write to a temporary file in the same directory, then rename over the target.

A checkpoint holds the model, the optimizer, the epoch it completed, the config and the history.
The learning rate is a pure function of the epoch and every epoch's randomness is seeded from
(seed, epoch) (ascl.runtime), so these are all that an exact resume needs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ascl.errors import CheckpointError
from ascl.run_files import BEST, LAST

FORMAT = "ascl-checkpoint-v1"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save({"format": FORMAT, **state}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path, map_location: torch.device | str = "cpu") -> dict[str, Any]:
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory: pass {path / LAST} or {path / BEST}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"{path} is not an ascl checkpoint, or is damaged ({_why(error)})") from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an ascl checkpoint (expected format {FORMAT})")
    return state


def _why(error: Exception) -> str:
    """torch's reason in a line. Its message for a file that holds more than tensors and plain
    values advises loading with weights_only=False, which runs the file's code: not passed on."""
    text = str(error).strip()
    if "weights_only" in text or "Weights only" in text:
        return "it holds objects other than tensors and plain values"
    return text.splitlines()[0] if text else type(error).__name__
