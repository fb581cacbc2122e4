"""Device, precision and random-number plumbing shared by training, attacks and evaluation."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from ascl.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; an explicit CUDA device that is missing is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", f"{name!r} was asked for but CUDA is not available on this machine")
    return device


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA for 'auto'/'bf16'; full fp32 on CPU (bf16 there is slow and lossy)."""
    if device.type == "cuda" and precision in ("auto", "bf16"):
        return torch.bfloat16
    return None


@contextlib.contextmanager
def autocast(dtype: torch.dtype | None, device: torch.device) -> Iterator[None]:
    """Autocast to `dtype` (None: off). The weight-cast cache is off: each region is one forward,
    which casts each weight once anyway, and a CUDA graph must not capture a cache's lifetime."""
    if dtype is None:
        yield
    else:
        with torch.autocast(device_type=device.type, dtype=dtype, cache_enabled=False):
            yield


def epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    """A generator seeded from (seed, epoch): a resumed epoch replays exactly, with no saved state."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed * 1_000_003 + epoch)
    return generator


def seed_global(seed: int, epoch: int) -> None:
    """Seeds torch's global RNG for the modules that draw from it (dropout)."""
    torch.manual_seed(seed * 1_000_003 + epoch)


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """TF32 on or off for CUDA matmuls and cuDNN convolutions (PyTorch enables it for cuDNN by
    default), restored afterwards so that no global setting outlives the caller."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


@contextlib.contextmanager
def cudnn_autotune(enabled: bool) -> Iterator[None]:
    """cuDNN's autotuner (`torch.backends.cudnn.benchmark`) on or off, restored afterwards. On, the
    first convolution of each new shape times cuDNN's algorithms and keeps the fastest: a training
    step's shapes never change, so that is a one-time cost of the first step. Off, cuDNN's
    heuristics choose without timing."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def default_cpu_threads() -> int:
    """Intra-op threads when neither the config nor OMP_NUM_THREADS says: half the usable cores,
    at least one. On a shared 2-core machine two busy-waiting OpenMP threads fight anything else
    running there (bench/results/README.md has the measurements)."""
    return max(1, len(os.sched_getaffinity(0)) // 2)


@contextlib.contextmanager
def cpu_threads(requested: int) -> Iterator[int]:
    """torch's intra-op thread count for the duration: `requested`, else OMP_NUM_THREADS when set
    (torch read it at start-up), else `default_cpu_threads()`; restored afterwards."""
    before = torch.get_num_threads()
    if requested:
        torch.set_num_threads(requested)
    elif "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(default_cpu_threads())
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
