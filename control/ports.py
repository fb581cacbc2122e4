"""Free local ports: every port the service starts is configurable and defaults to a free one, so
two services run side by side on one host."""

from __future__ import annotations

import socket


class PortInUse(Exception):
    """The API's port is taken (or not this host's to bind)."""


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


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket listening on host:port (0: any free port), held from before anything else starts, so
    that no child this process starts (Ray, MLflow) nor another service takes the port meanwhile
    (listening, not only bound: another SO_REUSEADDR socket could bind it too). Connections made
    before the server serves wait in the backlog."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a restart reuses its port
    try:
        sock.bind((host, port))
    except (OSError, OverflowError) as error:  # OverflowError: a port outside 0-65535
        sock.close()
        raise PortInUse(f"cannot listen on {host}:{port}: {getattr(error, 'strerror', None) or error}") from error
    sock.listen(2048)  # uvicorn's default backlog
    return sock
