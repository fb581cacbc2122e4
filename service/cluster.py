"""What the API needs to know about the execution cluster, as a protocol: the Ray implementation
lives in control/ (control.ray_cluster), so the API process can be tested (and run) without Ray."""

from __future__ import annotations

from typing import Protocol


class ClusterView(Protocol):
    def largest_node(self) -> dict[str, float] | None:
        """Resources of the biggest node ({'GPU': 1, 'CPU': 16, ...}); None when unknown."""

    def logs(self, submission_id: str) -> str | None:
        """The attempt's log text; None when the cluster has no record of it or cannot answer now
        (busy with other reads, or not within its deadline)."""

    def ready(self) -> bool: ...


class StaticCluster:
    """A fixed node shape: for tests and for an API process without a cluster connection."""

    def __init__(self, largest: dict[str, float] | None = None) -> None:
        self._largest = largest

    def largest_node(self) -> dict[str, float] | None:
        return self._largest

    def logs(self, submission_id: str) -> str | None:  # noqa: ARG002
        return None

    def ready(self) -> bool:
        return True
