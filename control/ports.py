"""Free local ports: every port the service starts is configurable and defaults to a free one, so
two services run side by side on one host."""

from __future__ import annotations

import socket


def free_port(preferred: int = 0) -> int:
    """`preferred` if it is free (0: none preferred), else any free port."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
        except OSError:
            probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports, all held open until every one is chosen."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for probe in sockets:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()
