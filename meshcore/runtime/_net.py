"""The real transport: UDP for datagrams and TCP for streams, on the same port number.

Limits: a received datagram larger than `DATAGRAM_RECEIVE_BYTES_MAX` is truncated by the
kernel (and then dropped by the sealer, which refuses anything over the wire maximum); at
most `streams_max` accepted streams are served at once (extra connections are closed at
once: a peer that floods us with connections costs a counter, not memory). Addresses are
kept numeric: names are resolved once, when the configuration is read.
"""

from __future__ import annotations

import errno

import trio

from .._types import Addr
from ..errors import ConfigError
from ._transport import CountingStream, StreamHandler, Transport

__all__ = ["UdpTcpTransport", "open_udp_tcp_transport", "DATAGRAM_RECEIVE_BYTES_MAX"]

DATAGRAM_RECEIVE_BYTES_MAX = 2048
STREAMS_MAX = 256
BIND_ATTEMPTS_MAX = 50
LISTEN_BACKLOG = 128


def _family(host: str) -> int:
    return trio.socket.AF_INET6 if ":" in host else trio.socket.AF_INET


class UdpTcpTransport(Transport):
    def __init__(
        self,
        udp: trio.socket.SocketType,
        tcp: trio.socket.SocketType,
        addr: Addr,
        *,
        streams_max: int = STREAMS_MAX,
    ) -> None:
        super().__init__()
        self._udp = udp
        self._tcp = tcp
        self._addr = addr
        self._streams_max = streams_max
        self._streams_active = 0
        self.streams_refused = 0

    @property
    def local_addr(self) -> Addr:
        return self._addr

    async def send_datagram(self, addr: Addr, data: bytes) -> None:
        try:
            await self._udp.sendto(data, addr)
        except (OSError, UnicodeError):
            self._counters.datagram_send_errors += 1
            return
        self._counters.datagrams_sent += 1
        self._counters.datagram_bytes_sent += len(data)

    async def receive_datagram(self) -> tuple[Addr, bytes]:
        while True:
            try:
                data, src = await self._udp.recvfrom(DATAGRAM_RECEIVE_BYTES_MAX)
            except OSError:
                # ICMP errors surface here on some systems; they say nothing about us.
                continue
            self._counters.datagrams_received += 1
            self._counters.datagram_bytes_received += len(data)
            return (src[0], src[1]), data

    async def connect_stream(self, addr: Addr) -> trio.abc.Stream:
        stream = await trio.open_tcp_stream(addr[0], addr[1])
        stream.setsockopt(trio.socket.IPPROTO_TCP, trio.socket.TCP_NODELAY, True)
        self._counters.streams_opened += 1
        return CountingStream(stream, self._counters)

    async def serve_streams(
        self,
        handler: StreamHandler,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        listener = trio.SocketListener(self._tcp)
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                try:
                    stream = await listener.accept()
                except OSError:
                    # EMFILE and friends: back off briefly instead of spinning.
                    await trio.sleep(0.05)
                    continue
                if self._streams_active >= self._streams_max:
                    self.streams_refused += 1
                    await stream.aclose()
                    continue
                try:
                    peer = stream.socket.getpeername()
                except OSError:
                    await stream.aclose()
                    continue
                self._counters.streams_accepted += 1
                self._streams_active += 1
                nursery.start_soon(self._serve_one, handler, stream, (peer[0], peer[1]))

    async def _serve_one(
        self, handler: StreamHandler, stream: trio.SocketStream, peer: Addr
    ) -> None:
        try:
            await handler(CountingStream(stream, self._counters), peer)
        finally:
            self._streams_active -= 1
            await trio.aclose_forcefully(stream)

    async def aclose(self) -> None:
        self._udp.close()
        self._tcp.close()


async def _bind_pair(host: str, port: int) -> tuple[trio.socket.SocketType, trio.socket.SocketType]:
    family = _family(host)
    udp = trio.socket.socket(family, trio.socket.SOCK_DGRAM)
    tcp = trio.socket.socket(family, trio.socket.SOCK_STREAM)
    try:
        await udp.bind((host, port))
        bound_port = udp.getsockname()[1]
        tcp.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
        await tcp.bind((host, bound_port))
        tcp.listen(LISTEN_BACKLOG)
    except BaseException:
        udp.close()
        tcp.close()
        raise
    return udp, tcp


async def open_udp_tcp_transport(host: str, port: int) -> UdpTcpTransport:
    """Bind UDP and TCP on `host:port` (port 0: the same ephemeral port for both).

    Raises `ConfigError` when the address cannot be bound.
    """
    if not 0 <= port <= 65535:
        raise ConfigError(f"port {port} is out of range 0..65535")
    attempts = BIND_ATTEMPTS_MAX if port == 0 else 1
    last: OSError | None = None
    for _ in range(attempts):
        try:
            udp, tcp = await _bind_pair(host, port)
        except OSError as exc:
            last = exc
            # With port 0 the UDP port may be taken on TCP: draw another one.
            if port == 0 and exc.errno == errno.EADDRINUSE:
                continue
            break
        sockname = udp.getsockname()
        return UdpTcpTransport(udp, tcp, (sockname[0], sockname[1]))
    reason = last.strerror if last is not None and last.strerror else str(last)
    raise ConfigError(f"cannot bind {host}:{port} ({reason}); choose another address or port")
