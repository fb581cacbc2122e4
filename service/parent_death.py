"""A process that must not outlive its parent asks the kernel to signal it when the parent dies
(Linux's PR_SET_PDEATHSIG), which holds even when the parent is SIGKILLed or its node's Ray
raylet takes it down."""

from __future__ import annotations

import ctypes
import os

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int, *, parent: int | None = None) -> bool:
    """Arm signal `sig` for when the parent process dies (0 disarms). False when the parent (`parent`, else the one
    this process had when called) is already gone: the signal would never come, so the caller
    should end now."""
    expected = os.getppid() if parent is None else parent
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig)
    return os.getppid() == expected
