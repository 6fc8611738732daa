"""The open-loop client of benchmarks/bench_serving.py: on time, never early, every answer read."""

from __future__ import annotations

import asyncio

import numpy as np

from benchmarks.bench_serving import _open_loop


async def _serve_and_load(n: int, rate: float) -> dict:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    body = b'{"customer_id": "C1"}'
    raw = (f"POST /hints HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    async with server:
        return await _open_loop(port, [raw] * n, rate, max_conns=4)


def test_requests_are_written_at_their_due_time_never_before() -> None:
    res = asyncio.run(_serve_and_load(60, rate=200.0))
    assert res["n"] == 60 and res["errors"] == 0
    assert np.all(res["lag"] >= 0)  # written at or after the due time: latency counts from due
    assert np.all(res["due"] >= res["sent"])
    assert res["wall_s"] >= 59 / 200.0
