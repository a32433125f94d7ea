"""Byte-stream I/O straight on a trio socket's file descriptor: the hot path of links.

Each `trio.SocketStream.send_all` / `receive_some` runs about a dozen Python calls around
the one system call (conflict detector, the nonblocking helper and its context manager, a
reschedule of the task), which on a busy kv link is a large part of the CPU per request.
`StreamIO` tries the system call first and only waits (`trio.lowlevel.wait_readable` /
`wait_writable`, the public primitives trio's sockets use themselves) when the kernel says
it would block; any other stream (memory streams in tests, WebSocket) is used as given.

Semantics kept from trio: every call is a cancellation point (`checkpoint_if_cancelled`),
OS errors become `trio.BrokenResourceError`, a closed socket `trio.ClosedResourceError`,
end of stream is `b""`. A reader that always finds data yields to the scheduler every
`_READS_PER_YIELD` reads, so a busy link cannot starve the node's other tasks. A read
that came back short (it emptied the kernel's buffer) makes the next call wait for data
before reading: trying first would mostly cost a system call that finds nothing (it was
about half of all reads on a busy kv link; waiting first measured ~4 % less CPU per put).
One `StreamIO` serves one reader and one writer at a time: a second task sending (or
receiving) while one waits gets `trio.BusyResourceError`, as with trio's own streams,
instead of interleaving its bytes with the first one's.
"""

from __future__ import annotations

import os

import trio

__all__ = ["StreamIO", "acquire"]

_READS_PER_YIELD = 8


async def acquire(lock: trio.Lock | trio.StrictFIFOLock | trio.Semaphore) -> None:
    """Take `lock`, waiting (in FIFO order) only if it is held or has waiters: on a hot
    path an uncontended lock then costs no reschedule. Still a cancellation point."""
    try:
        lock.acquire_nowait()
    except trio.WouldBlock:
        await lock.acquire()
    else:
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
        except BaseException:
            lock.release()
            raise


class StreamIO:
    __slots__ = ("stream", "_socket", "_reads", "_sending", "_receiving", "_drained")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self._socket = stream.socket if isinstance(stream, trio.SocketStream) else None
        self._reads = 0
        self._sending = False
        self._receiving = False
        self._drained = False

    def _fd(self) -> int:
        assert self._socket is not None
        fd = self._socket.fileno()
        if fd < 0:
            raise trio.ClosedResourceError("the socket was closed")
        return fd

    async def send_all(self, data: bytes) -> None:
        if self._socket is None:
            await self.stream.send_all(data)
            return
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        await trio.lowlevel.checkpoint_if_cancelled()
        view = memoryview(data)
        self._sending = True
        try:
            while view:
                fd = self._fd()
                try:
                    sent = os.write(fd, view)
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(fd)
                    continue
                except OSError as exc:
                    raise trio.BrokenResourceError(f"socket write failed: {exc}") from exc
                view = view[sent:]
        finally:
            self._sending = False

    def write_nowait(self, data: bytes | memoryview) -> int:
        """Write what the kernel takes of `data` now, without waiting: the number of bytes
        written (0 if it would block, another task is sending, or this is not a socket).
        Raises `trio.BrokenResourceError` or `trio.ClosedResourceError` as `send_all` does."""
        if self._socket is None or self._sending:
            return 0
        fd = self._fd()
        try:
            return os.write(fd, data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise trio.BrokenResourceError(f"socket write failed: {exc}") from exc

    async def receive_some(self, max_bytes: int) -> bytes | bytearray:
        if self._socket is None:
            return await self.stream.receive_some(max_bytes)
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this stream")
        await trio.lowlevel.checkpoint_if_cancelled()
        self._receiving = True
        try:
            if self._drained:
                # The last read emptied the kernel's buffer: a read now would most likely
                # find nothing (a wasted system call), so wait for data first.
                self._drained = False
                self._reads = 0
                await trio.lowlevel.wait_readable(self._fd())
            while True:
                fd = self._fd()
                try:
                    data = os.read(fd, max_bytes)
                except BlockingIOError:
                    self._reads = 0
                    await trio.lowlevel.wait_readable(fd)
                    continue
                except OSError as exc:
                    raise trio.BrokenResourceError(f"socket read failed: {exc}") from exc
                self._drained = 0 < len(data) < max_bytes
                self._reads += 1
                if self._reads >= _READS_PER_YIELD:
                    self._reads = 0
                    await trio.lowlevel.cancel_shielded_checkpoint()
                return data
        finally:
            self._receiving = False
