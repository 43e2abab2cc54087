"""uvicorn's httptools protocol, sending a response's head and body in one socket write.

uvicorn writes the status line and headers, then the body, as two `transport.write` calls,
and uvloop sends each at once: two syscalls per response, and a client that wakes twice
(once for a head it cannot use without the body). Under `benchmarks/serve_load.py`,
py-spy found the event loop in the head's write a fifth of the time on `.npy` lookups
(the body's write: an eighth). Here a small write waits
for the next write, or for the end of the event-loop iteration at the latest, so a
response's head and body leave together; nothing else about the protocol changes.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: Writes up to this size may wait for the next one (a head; or a small body on its own).
HOLD_BYTES = 16 * 1024


class CoalescingTransport:
    """Wraps a transport: a small write is held until the next write (sent together, one
    syscall) or until the loop's next iteration, whichever comes first. Order is kept."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            self._transport.writelines((held, data))
        elif len(data) <= HOLD_BYTES:
            self._held = data
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def writelines(self, lines: Any) -> None:
        self.flush()
        self._transport.writelines(lines)

    def flush(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            if not self._transport.is_closing():
                self._transport.write(held)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()  # close() still sends what was written before it
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # everything else: the transport itself
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """`uvicorn.run(..., http=CoalescingHttpToolsProtocol)`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # Duck-typed: what the protocol does not find on the wrapper, the wrapper delegates.
        super().connection_made(cast(asyncio.Transport, CoalescingTransport(transport, self.loop)))
