"""WebSocket as a second stream transport, for sites that only reach out through HTTP proxies.

`WebSocketTransport` wraps the node's datagram+stream transport (UDP/TCP, or in-memory):

- with `ws_bind`, it also accepts streams on a WebSocket listener (binary messages, one
  byte stream per connection) and hands them to the same handler as TCP streams, so the
  Noise handshake, the rate limit and the request/reply protocol are identical;
- `connect_stream(addr)` goes over WebSocket when `addr` has a route (`ws://HOST:PORT`):
  seeds given as `ws://...`, and members that advertise a `ws` tag once this node has a
  WebSocket listener itself (two WebSocket sites then link over WebSocket);
- datagrams always use the inner transport.

Design limits (why the mesh still works, and where it does not):
- UDP cannot cross a WebSocket-only path. SWIM copes: a member whose UDP is unreachable
  fails the UDP probe, and the core's stream fallback probe (an encoded Ping over a stream,
  here WebSocket) answers it, so it is not declared dead; membership and broadcasts reach
  it by push-pull over streams. Failure detection of such a member is as slow as the
  stream fallback, and each failed UDP probe raises the prober's local-health score.
- A node that cannot send UDP at all still probes others by UDP and sees timeouts; it
  should run with a larger probe timeout (a `wan` profile). Fully UDP-less sites are not a
  supported configuration yet.
- Only `ws://`: the link is already end-to-end Noise-encrypted and authenticated; TLS
  (`wss://`) for proxies that demand it is not configured here.
- At most `streams_max` WebSocket connections are served at once; extra ones are closed.
"""

from __future__ import annotations

import functools
import logging
from urllib.parse import urlsplit

import trio
import trio_websocket

from .._types import Addr
from ..errors import ConfigError
from ._securelink import WebSocketStream, websocket_request_handler
from ._transport import CountingStream, StreamHandler, Transport, TransportStatistics

__all__ = ["WebSocketTransport", "parse_ws_url", "ws_url"]

log = logging.getLogger("meshcore.runtime")

STREAMS_MAX = 256
WS_MESSAGE_BYTES_MAX = 1 << 20


def parse_ws_url(text: str) -> Addr:
    """`ws://HOST:PORT` (a trailing `/` allowed) -> (host, port); ConfigError otherwise."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        raise ConfigError(f"{text!r} is not a ws://HOST:PORT address") from None
    if parts.scheme != "ws" or not parts.hostname or port is None or parts.path not in ("", "/"):
        raise ConfigError(
            f"{text!r} must be ws://HOST:PORT (wss:// is not supported: links are "
            "Noise-encrypted already)"
        )
    return (parts.hostname, port)


def ws_url(addr: Addr) -> str:
    host = f"[{addr[0]}]" if ":" in addr[0] else addr[0]
    return f"ws://{host}:{addr[1]}/"


class WebSocketTransport(Transport):
    def __init__(
        self,
        inner: Transport,
        *,
        ws_bind: Addr | None = None,
        routes: dict[Addr, Addr] | None = None,
        streams_max: int = STREAMS_MAX,
    ) -> None:
        super().__init__()
        self._inner = inner
        self._ws_bind = ws_bind
        self._ws_addr: Addr | None = None
        #: stream destination -> WebSocket endpoint
        self._routes: dict[Addr, Addr] = dict(routes or {})
        self._seed_routes = frozenset(self._routes)
        self._streams_max = streams_max
        self._streams_active = 0
        self._nursery: trio.Nursery | None = None
        self.streams_refused = 0

    @property
    def local_addr(self) -> Addr:
        return self._inner.local_addr

    @property
    def ws_addr(self) -> Addr | None:
        """The bound WebSocket address, once serving (None without `ws_bind`)."""
        return self._ws_addr

    @property
    def ws_streams(self) -> tuple[int, int]:
        """(opened, accepted) streams over WebSocket."""
        return (self._counters.streams_opened, self._counters.streams_accepted)

    @property
    def has_listener(self) -> bool:
        return self._ws_bind is not None

    def set_route(self, addr: Addr, endpoint: Addr | None) -> None:
        """Reach `addr`'s streams through the WebSocket `endpoint` (None: plain streams)."""
        if addr in self._seed_routes:
            return
        if endpoint is None:
            self._routes.pop(addr, None)
        else:
            self._routes[addr] = endpoint

    def route(self, addr: Addr) -> Addr | None:
        return self._routes.get(addr)

    def datagram_routable(self, addr: Addr) -> bool:
        """False for a WebSocket-only seed address (it is not a UDP address)."""
        return addr not in self._seed_routes

    async def send_datagram(self, addr: Addr, data: bytes) -> None:
        await self._inner.send_datagram(addr, data)

    async def receive_datagram(self) -> tuple[Addr, bytes]:
        return await self._inner.receive_datagram()

    async def connect_stream(self, addr: Addr) -> trio.abc.Stream:
        endpoint = self._routes.get(addr)
        if endpoint is None:
            return await self._inner.connect_stream(addr)
        if self._nursery is None:
            raise trio.ClosedResourceError("the WebSocket transport is not serving yet")
        try:
            ws = await trio_websocket.connect_websocket_url(
                self._nursery, ws_url(endpoint), max_message_size=WS_MESSAGE_BYTES_MAX
            )
        except (trio_websocket.HandshakeError, trio_websocket.ConnectionRejected) as exc:
            raise ConnectionRefusedError(f"websocket {ws_url(endpoint)}: {exc}") from None
        self._counters.streams_opened += 1
        return CountingStream(WebSocketStream(ws), self._counters)

    async def serve_streams(
        self,
        handler: StreamHandler,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self._inner.serve_streams, handler)
            if self._ws_bind is not None:
                on_request = websocket_request_handler(functools.partial(self._serve_one, handler))
                server = await nursery.start(
                    functools.partial(
                        trio_websocket.serve_websocket, on_request, self._ws_bind[0],
                        self._ws_bind[1], None, max_message_size=WS_MESSAGE_BYTES_MAX,
                    )
                )
                self._ws_addr = (self._ws_bind[0], server.port)
            task_status.started()

    async def _serve_one(self, handler: StreamHandler, stream: WebSocketStream, peer: Addr) -> None:
        if self._streams_active >= self._streams_max:
            self.streams_refused += 1
            await trio.aclose_forcefully(stream)
            return
        self._counters.streams_accepted += 1
        self._streams_active += 1
        try:
            await handler(CountingStream(stream, self._counters), peer)
        finally:
            self._streams_active -= 1
            await trio.aclose_forcefully(stream)

    async def aclose(self) -> None:
        await self._inner.aclose()

    def statistics(self) -> TransportStatistics:
        inner = self._inner.statistics()
        mine = self._counters
        return TransportStatistics(
            datagrams_sent=inner.datagrams_sent,
            datagram_bytes_sent=inner.datagram_bytes_sent,
            datagrams_received=inner.datagrams_received,
            datagram_bytes_received=inner.datagram_bytes_received,
            datagram_send_errors=inner.datagram_send_errors,
            streams_opened=inner.streams_opened + mine.streams_opened,
            streams_accepted=inner.streams_accepted + mine.streams_accepted,
            stream_bytes_sent=inner.stream_bytes_sent + mine.stream_bytes_sent,
        )
