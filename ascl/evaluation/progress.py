"""Progress of the evaluation attacks, for a terminal bar or a log: which attack runs, and how many
of its examples are done."""

from __future__ import annotations

from typing import Protocol


class AttackProgress(Protocol):
    def start(self, attack: str, total: int) -> None:
        """`attack` starts on `total` examples."""

    def advance(self, examples: int) -> None:
        """`examples` more examples of the current attack are done."""


class NoProgress:
    def start(self, attack: str, total: int) -> None:
        pass

    def advance(self, examples: int) -> None:
        pass
