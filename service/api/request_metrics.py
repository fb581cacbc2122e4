"""Requests counted by method, route and status for /metrics, in place of an access-log line per
poll and heartbeat. Labels come from the routes' path templates (a bounded set), never from the raw
path or a method name the client made up."""

from __future__ import annotations

from collections import Counter

from fastapi import APIRouter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.metrics import Metric

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestCounts:
    """What the middleware counted, read by /metrics."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str, str]] = Counter()
        self.templates: dict[int, str] = {}  # id of a route object -> its full path template

    def name_routes(self, router: APIRouter, prefix: str = "") -> None:
        """Learn the full templates of a router's routes, as the app includes it."""
        for route in router.routes:
            self.templates[id(route)] = prefix + str(getattr(route, "path", ""))

    def metric(self) -> Metric:
        samples = [
            ({"method": method, "route": route, "status": status}, float(count))
            for (method, route, status), count in sorted(self.counts.items())
        ]
        return Metric("ascl_http_requests_total", "counter", "HTTP requests by method, route and status.", samples)


class CountRequests:
    def __init__(self, app: ASGIApp, *, counts: RequestCounts) -> None:
        self.app = app
        self.counts = counts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = "500"  # unless a response starts

        async def noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = str(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, noting_status)
        finally:
            route = self.counts.templates.get(id(scope.get("route")), "unmatched")
            method = scope["method"] if scope["method"] in METHODS else "other"
            self.counts.counts[(method, route, status)] += 1
