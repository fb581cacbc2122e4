"""Where a gang of workers fits: every worker on one node with enough free of each resource, all or
none (first fit, largest nodes first). Ray places the job itself; this only decides admission."""

from __future__ import annotations

from service.scheduling.model import Amounts, Request

EPSILON = 1e-9


def fits_node(per_worker: Amounts, free: Amounts) -> bool:
    return all(free.get(key, 0.0) + EPSILON >= amount for key, amount in per_worker.items())


def place(request: Request, nodes: list[Amounts]) -> list[Amounts] | None:
    """The nodes' free amounts after placing every worker, or None when the gang does not fit."""
    left = [dict(node) for node in nodes]
    for _ in range(request.workers):
        candidates = [node for node in left if fits_node(request.per_worker, node)]
        if not candidates:
            return None
        node = max(candidates, key=lambda n: (n.get("GPU", 0.0), n.get("CPU", 0.0)))
        for key, amount in request.per_worker.items():
            node[key] = node.get(key, 0.0) - amount
    return left


def ever_fits(request: Request, totals: list[Amounts]) -> bool:
    """Could the gang run on an empty cluster of these nodes?"""
    return bool(totals) and place(request, totals) is not None
