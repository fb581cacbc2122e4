"""How many versions each registered model has, and its latest, read again only once the model
changed: MLflow keeps no count, so one takes reading every version (about 0.15 ms each on a local
store), and the model list asks it of every model at every refresh. A registered model's
last-updated time moves with each version created or deleted; tags and aliases change no count."""

from __future__ import annotations

import threading
from collections.abc import Callable

CACHED_MODELS = 10_000  # entries kept, the oldest dropped first: a bound, not a working set


class VersionCounts:
    def __init__(self) -> None:
        self._known: dict[str, tuple[int, int, str | None]] = {}  # name → (updated at, count, latest)
        self._lock = threading.Lock()

    def get(self, name: str, updated_at: int | None, numbers: Callable[[], list[int]]) -> tuple[int, str | None]:
        """(count, latest) of `name` as last updated at `updated_at` (ms; None: unknown, never
        cached); `numbers` reads every version's number when it is not known."""
        known = self._known.get(name)
        if known is not None and updated_at is not None and known[0] == updated_at:
            return known[1], known[2]
        read = numbers()
        counted = (len(read), str(max(read)) if read else None)
        if updated_at is not None:
            with self._lock:
                if name not in self._known and len(self._known) >= CACHED_MODELS:
                    self._known.pop(next(iter(self._known)))
                self._known[name] = (updated_at, *counted)
        return counted
