"""How many versions each registered model has, read again only once the model changed: MLflow keeps
no count, so one takes reading every version (about 0.15 ms each on a local store), and the model
list asks it of every model at every refresh. A model's state is its last-updated time (which moves
with each version created or deleted) with its newest version (two created within one millisecond
leave the time as it was)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

CACHED_MODELS = 10_000  # the least recently listed go first


class VersionCounts:
    def __init__(self) -> None:
        self._known: OrderedDict[str, tuple[Hashable, int]] = OrderedDict()  # name → (state, count)
        self._lock = threading.Lock()

    def get(self, name: str, state: Hashable, count: Callable[[], int]) -> int:
        """The version count of `name` in `state`; `count` reads it when it is not known."""
        with self._lock:
            known = self._known.get(name)
            if known is not None and known[0] == state:
                self._known.move_to_end(name)
                return known[1]
        counted = count()
        with self._lock:
            self._known[name] = (state, counted)
            self._known.move_to_end(name)
            if len(self._known) > CACHED_MODELS:
                self._known.popitem(last=False)
        return counted
