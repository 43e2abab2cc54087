"""asl-serve's HTTP protocol: a response's head and body in one write, the same bytes on the wire."""

from __future__ import annotations

import asyncio
import socket

import pytest
import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from websockets.asyncio.client import connect

from server.protocol import HOLD_BYTES, CoalescingHttpToolsProtocol, CoalescingTransport


class FakeTransport:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[bytes, ...]]] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", (data,)))

    def writelines(self, lines) -> None:
        self.calls.append(("writelines", tuple(lines)))

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default=None):
        return ("127.0.0.1", 1) if name == "peername" else default


def test_head_and_body_leave_in_one_call():
    async def main():
        fake = FakeTransport()
        t = CoalescingTransport(fake, asyncio.get_running_loop())
        t.write(b"HTTP/1.1 200 OK\r\n\r\n")
        assert fake.calls == []  # held for the body
        t.write(b"x" * 100_000)
        assert fake.calls == [("writelines", (b"HTTP/1.1 200 OK\r\n\r\n", b"x" * 100_000))]
        await asyncio.sleep(0)
        assert len(fake.calls) == 1  # the scheduled flush finds nothing left

    asyncio.run(main())


def test_a_lone_small_write_goes_out_on_the_next_iteration():
    async def main():
        fake = FakeTransport()
        t = CoalescingTransport(fake, asyncio.get_running_loop())
        t.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        assert t.get_write_buffer_size() == len(b"HTTP/1.1 100 Continue\r\n\r\n")
        await asyncio.sleep(0)
        assert fake.calls == [("write", (b"HTTP/1.1 100 Continue\r\n\r\n",))]

    asyncio.run(main())


def test_order_is_kept_and_close_sends_what_was_held():
    async def main():
        fake = FakeTransport()
        t = CoalescingTransport(fake, asyncio.get_running_loop())
        t.write(b"x" * (HOLD_BYTES + 1))  # too big to hold: at once
        t.write(b"a")
        t.writelines([b"b", b"c"])
        t.write(b"d")
        t.close()
        sent = b"".join(b"".join(data) for _, data in fake.calls)
        assert sent == b"x" * (HOLD_BYTES + 1) + b"abcd"
        assert fake.closed
        assert t.get_extra_info("peername") == ("127.0.0.1", 1)  # the rest is the transport's

    asyncio.run(main())


async def app(scope, receive, send):
    """Responses of every shape uvicorn writes: small, large, chunked, and a WebSocket."""
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        message = await receive()
        await send({"type": "websocket.send", "text": message["text"] * 2})
        await send({"type": "websocket.close"})
        return
    await receive()
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one", b"two" * 10_000, b""):
            await send({"type": "http.response.body", "body": part, "more_body": bool(part)})
        return
    body = b"y" * 100_000 if scope["path"] == "/big" else b'{"ok":true}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def serve_and_ask(http) -> tuple[bytes, str]:
    """Pipelined keep-alive requests on one connection, read to the end; then a WebSocket."""
    config = uvicorn.Config(app, http=http, lifespan="off", log_level="error", date_header=False)
    server = uvicorn.Server(config)
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(1000):  # at most 10 s; a server that failed to start raises here
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if not server.started:
        task.cancel()
        raise AssertionError(
            f"uvicorn did not start: {task.exception() if task.done() else 'timeout'}"
        )
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        paths = ["/small", "/big", "/stream", "/small"]
        requests = [f"GET {p} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for p in paths]
        writer.write(b"".join(requests[:-1]))
        writer.write(requests[-1].replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
        raw = await asyncio.wait_for(reader.read(-1), 10)
        writer.close()
        async with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10) as ws:
            await ws.send("hi")
            echo = await asyncio.wait_for(ws.recv(), 10)
        return raw, echo
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
def test_the_wire_bytes_are_those_of_uvicorn_own_protocol(run):
    ours, ours_echo = run(serve_and_ask(CoalescingHttpToolsProtocol))
    plain, plain_echo = run(serve_and_ask(HttpToolsProtocol))
    assert ours == plain
    assert ours.count(b"HTTP/1.1 200 OK") == 4 and ours.endswith(b'{"ok":true}')
    assert ours_echo == plain_echo == "hihi"
