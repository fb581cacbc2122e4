"""Submission load for bench_service.py, written against raw sockets: httpx spent ~5 ms of CPU per
request here (a whole core at 200 requests/s), and on a 2-core machine the benchmark measured its own
client. Each simulated user has its own connection and API token."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

BODY = {"kind": "train", "preset": "digits-ascl", "overrides": {"train.epochs": 1}, "tags": ["bench"]}


def post_payload(token: str, *, keyed: bool) -> bytes:
    """One submission as bytes; with `keyed`, a fresh Idempotency-Key (so every request is new)."""
    body = json.dumps(BODY).encode()
    head = "POST /api/v1/jobs HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
    head += f"Authorization: Bearer {token}\r\n"
    if keyed:
        head += f"Idempotency-Key: {uuid.uuid4().hex}\r\n"
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes) -> int:
    """One HTTP/1.1 request on a kept-alive connection; the response status."""
    writer.write(payload)
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0
    )
    await reader.readexactly(length)
    return int(head[9:12])


async def closed_loop(port: int, tokens_: list[str], *, keyed: bool, requests: int) -> tuple[float, list[float]]:
    """One connection per user, each sending its next request when the last is answered."""
    latencies: list[float] = []
    counter = iter(range(requests))

    async def client(token: str) -> None:
        payloads = [post_payload(token, keyed=keyed) for _ in range(requests // len(tokens_) + 1)]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _, payload in zip(counter, payloads, strict=False):
            started = time.perf_counter()
            status = await exchange(reader, writer, payload)
            latencies.append(time.perf_counter() - started)
            assert status == 201, status
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(token) for token in tokens_))
    return time.perf_counter() - started, latencies


async def open_loop(
    port: int, tokens_: list[str], *, keyed: bool, rate: float, seconds: float
) -> tuple[float, list[float]]:
    """A fixed offered rate spread over the users' connections. Latency counts from when a request
    was due, so a slow answer that delays the next request is charged to it (no coordinated omission)."""
    latencies: list[float] = []
    total = int(rate * seconds)
    clients = len(tokens_)

    async def client(first: int, token: str) -> None:
        dues = [start + k / rate for k in range(first, total, clients)]
        payloads = [post_payload(token, keyed=keyed) for _ in dues]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for due, payload in zip(dues, payloads, strict=True):
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            status = await exchange(reader, writer, payload)
            latencies.append(time.perf_counter() - due)
            assert status == 201, status
        writer.close()

    start = time.perf_counter() + 0.5
    await asyncio.gather(*(client(i, token) for i, token in enumerate(tokens_)))
    return time.perf_counter() - start, latencies
