"""What one client may hold: a request body of bounded size that arrives within a deadline, and a
bounded number of requests in progress and of log streams per user.

A body larger than the limit gets 413 before any route reads it, whether it announces its length or
streams it; one that has not arrived within the deadline gets 408 (a client that sends a byte a
minute would otherwise hold its connection for ever). A streamed body is read here first (it is
bounded by the limit) and handed to the route afterwards, because a route's body parser would turn
an error raised while it reads into a 400."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.jobs.errors import TooMany


class Slots:
    """Things users hold at once (open log streams, requests in progress), counted per user and in
    total. Used from the event loop only, so the counts need no lock."""

    def __init__(self, what: str, *, per_user: int, total: int | None = None) -> None:
        self.what, self.per_user, self.total = what, per_user, total
        self.open: Counter[str] = Counter()

    def take(self, user: str) -> None:
        if self.total is not None and self.open.total() >= self.total:
            raise TooMany(f"the service already serves {self.total} {self.what}; try again later")
        if self.open[user] >= self.per_user:
            raise TooMany(f"{user} already has {self.per_user} {self.what}; wait for one to end")
        self.open[user] += 1

    def give_back(self, user: str) -> None:
        self.open[user] -= 1
        if not self.open[user]:
            del self.open[user]  # the counter keeps only users holding something


class BodySizeLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int, deadline_s: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.deadline_s = deadline_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send)
            return
        body: list[Message] = []
        received = 0
        deadline = time.monotonic() + self.deadline_s
        while True:
            try:
                message = await asyncio.wait_for(receive(), timeout=max(deadline - time.monotonic(), 0.0))
            except TimeoutError:
                await self._answer(
                    send, 408, "RequestTimeout", f"the request body did not arrive within {self.deadline_s:g} s"
                )
                return
            body.append(message)
            if message["type"] != "http.request":
                break
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                await self._refuse(send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return body.pop(0) if body else await receive()  # then disconnects, as they come

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        await self._answer(send, 413, "RequestTooLarge", f"the request body is over {self.max_bytes} bytes")

    @staticmethod
    async def _answer(send: Send, status: int, error: str, detail: str) -> None:
        body = json.dumps({"error": error, "detail": detail, "field": None}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
