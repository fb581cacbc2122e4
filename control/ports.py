"""Free local ports: every port the service starts is configurable and defaults to a free one, so
two services run side by side on one host."""

from __future__ import annotations

import errno
import socket

from service.settings import host_and_port


class CannotListen(Exception):
    """The API cannot listen where it was asked to; the message says why."""


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


def listening_sockets(host: str, port: int) -> list[socket.socket]:
    """Sockets listening on host:port (0: any free port), one per address the host has (as uvicorn
    binds them: `localhost` is 127.0.0.1 and ::1), held from before anything else starts, so that
    no child this process starts (Ray, MLflow) nor another service takes the port meanwhile
    (listening, not only bound: another SO_REUSEADDR socket could bind it too). Connections made
    before the server serves wait in the backlog."""
    where = host_and_port(host, port)
    if not 0 <= port <= 65535:  # getaddrinfo would take 70000 for 4464
        raise CannotListen(f"cannot listen on {where}: a port is 0-65535")
    try:
        addresses = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    except (OSError, UnicodeError) as error:  # UnicodeError: a host name IDNA cannot encode
        raise CannotListen(f"cannot listen on {where}: {error}") from error
    sockets: list[socket.socket] = []
    try:
        for family, kind, protocol, _, address in dict.fromkeys(addresses):  # getaddrinfo may repeat one
            sock = socket.socket(family, kind, protocol)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a restart reuses its port
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # its IPv4 twin binds on its own
            if port == 0 and len(sockets) > 1:  # every address on the port the first one got
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock.bind(address)
            sock.listen(2048)  # uvicorn's default backlog
    except OSError as error:
        for sock in sockets:
            sock.close()
        hint = "; choose another port (0: any free one)" if error.errno == errno.EADDRINUSE else ""
        raise CannotListen(f"cannot listen on {where}: {error.strerror or error}{hint}") from error
    return sockets
