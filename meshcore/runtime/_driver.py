"""The trio driver of the SWIM core: one task owns the core and turns effects into I/O.

Everything that changes the core goes through the driver's inbox and is applied by the one
driver task, so the core needs no locks. Helper tasks only move bytes: the datagram
receiver opens datagrams (through the sealer) and queues them; each stream request, in or
out, runs in its own task bounded by a timeout and queues its result. Timers live in one
heap; the driver sleeps until the next deadline or the next inbox item, whichever is first.
The clock is `trio.current_time()`, so `MockClock` drives everything in tests.

Limits: the inbox holds `inbox_items_max` items; a datagram that finds it full is dropped
and counted (UDP is lossy anyway, and the core must never fall behind unboundedly); at most
`streams_out_max` outgoing stream requests run at once (beyond that the core is told the
request failed). An exception escaping the core is a core bug: it is logged with its
traceback and counted, and the node keeps serving (a packet must never kill a node).

A datagram the sealer cannot seal (no key for that address yet) is dropped, counted, and
triggers a key-exchange-only stream connection to the address (the handshake admits both
sides), at most once per `handshake_retry_s` per address and `handshakes_max` at once.
"""

from __future__ import annotations

import functools
import logging
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from .._types import Addr
from ..errors import MeshError
from ..swim._effects import (
    Effect,
    MemberEvent,
    SendDatagram,
    SendStream,
    SetTimer,
    Timer,
    UserBroadcast,
)
from ._seams import DatagramSealer, StreamWrapper
from ._timers import TimerHeap
from ._transport import Transport

__all__ = ["Core", "Driver", "DriverStatistics", "DriverLimits"]

log = logging.getLogger("meshcore.runtime")

Event = MemberEvent | UserBroadcast


class Core(Protocol):
    """What the driver needs from the SWIM core (`meshcore.swim.Swim` provides it)."""

    def start(self, now: float, seeds: Sequence[Addr]) -> list[Effect]: ...
    def on_datagram(self, now: float, src: Addr, data: bytes) -> list[Effect]: ...
    def on_stream_request(
        self, now: float, src: Addr, data: bytes
    ) -> tuple[bytes | None, list[Effect]]: ...
    def on_stream_reply(self, now: float, token: int, data: bytes) -> list[Effect]: ...
    def on_stream_failed(self, now: float, token: int, *, refused: bool = False) -> list[Effect]: ...
    def on_timer(self, now: float, timer: Timer) -> list[Effect]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class DriverLimits:
    inbox_items_max: int = 4096
    streams_out_max: int = 64
    #: How long a peer may take to send its request on an accepted stream and read our reply.
    stream_serve_timeout_s: float = 10.0
    #: Key-exchange handshakes for unsealable destinations: per-address spacing, at once,
    #: and how many addresses are remembered for the spacing.
    handshake_retry_s: float = 2.0
    handshakes_max: int = 16
    handshake_addrs_max: int = 4096


@dataclass(frozen=True, slots=True, kw_only=True)
class DriverStatistics:
    datagrams_in: int
    datagrams_dropped_sealer: int
    datagrams_dropped_inbox_full: int
    datagrams_out: int
    datagrams_unsealable: int
    datagram_seal_errors: int
    handshakes_requested: int
    handshakes_only_in: int
    stream_requests_out: int
    stream_requests_failed: int
    stream_requests_in: int
    stream_requests_in_bad: int
    core_errors: int
    timers_pending: int


class _Reply:
    """A one-shot slot a helper task waits on while the driver computes the answer."""

    __slots__ = ("done", "value", "error")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.value: Any = None
        self.error: BaseException | None = None


# Inbox items are small tuples tagged by their first element (cheaper than classes on the
# per-datagram path): ("d", src, plaintext), ("q", src, request, reply), ("r", token,
# data | None), ("c", fn, reply).
_DATAGRAM, _REQUEST, _RESULT, _CALL = "d", "q", "r", "c"
#: A stream request whose connection the peer's host refused (nothing listens there).
_REFUSED = b"refused"


def _is_refused(exc: BaseException) -> bool:
    """Was this connection actively refused? trio.open_tcp_stream wraps the per-address
    errors (as the cause, possibly an exception group), so look inside."""
    seen: list[BaseException] = [exc]
    while seen:
        e = seen.pop()
        if isinstance(e, ConnectionRefusedError):
            return True
        if isinstance(e, BaseExceptionGroup):
            seen.extend(e.exceptions)
        if e.__cause__ is not None:
            seen.append(e.__cause__)
    return False

_STREAM_ERRORS = (
    OSError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    trio.EndOfChannel,
    MeshError,
    ValueError,
)


class Driver:
    def __init__(
        self,
        *,
        core: Core,
        transport: Transport,
        sealer: DatagramSealer,
        stream_wrapper: StreamWrapper,
        on_event: Callable[[Event], None],
        limits: DriverLimits = DriverLimits(),
    ) -> None:
        self._core = core
        self._transport = transport
        self._sealer = sealer
        self._wrap = stream_wrapper
        self._on_event = on_event
        self._limits = limits
        self._timers = TimerHeap()
        self._inbox_send, self._inbox = trio.open_memory_channel[tuple[Any, ...]](
            limits.inbox_items_max
        )
        self._nursery: trio.Nursery | None = None
        self._streams_out = 0
        self._handshakes = 0
        self._handshake_at: dict[Addr, float] = {}
        self._c = {
            "datagrams_in": 0,
            "datagrams_dropped_sealer": 0,
            "datagrams_dropped_inbox_full": 0,
            "datagrams_out": 0,
            "datagrams_unsealable": 0,
            "datagram_seal_errors": 0,
            "handshakes_requested": 0,
            "handshakes_only_in": 0,
            "stream_requests_out": 0,
            "stream_requests_failed": 0,
            "stream_requests_in": 0,
            "stream_requests_in_bad": 0,
            "core_errors": 0,
        }

    def statistics(self) -> DriverStatistics:
        return DriverStatistics(**self._c, timers_pending=len(self._timers))

    # --- life cycle -------------------------------------------------------------------

    async def run(
        self,
        seeds: Sequence[Addr],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until cancelled. `started()` once the sockets serve and the core started."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self._transport.serve_streams, self._serve_stream)
            nursery.start_soon(self._receive_datagrams)
            await self._apply(self._guard(lambda now: self._core.start(now, seeds)))
            task_status.started()
            await self._loop()

    async def call(self, fn: Callable[[float], list[Effect]]) -> None:
        """Run `fn(now)` in the driver task, apply its effects, and return once applied.

        This is how the node API changes the core (broadcast, metadata, leave); an
        exception `fn` raises (local misuse) is re-raised here, in the caller.
        """
        reply = _Reply()
        await self._inbox_send.send((_CALL, fn, reply))
        await reply.done.wait()
        if reply.error is not None:
            raise reply.error

    # --- the driver task --------------------------------------------------------------

    async def _loop(self) -> None:
        timers = self._timers
        inbox = self._inbox
        while True:
            now = trio.current_time()
            timer = timers.pop_due(now)
            while timer is not None:
                await self._apply(self._guard(functools.partial(self._on_timer, timer)))
                now = trio.current_time()
                timer = timers.pop_due(now)
            deadline = timers.next_deadline()
            item: tuple[Any, ...] | None = None
            if deadline == math.inf:
                item = await inbox.receive()
            else:
                with trio.move_on_at(deadline):
                    item = await inbox.receive()
            # Drain what is already queued before looking at timers again: one wake-up,
            # many datagrams, under load.
            while item is not None:
                await self._handle(item)
                try:
                    item = inbox.receive_nowait()
                except trio.WouldBlock:
                    item = None
                if timers.next_deadline() <= trio.current_time():
                    if item is not None:
                        await self._handle(item)
                    break

    async def _handle(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        if kind == _DATAGRAM:
            src, data = item[1], item[2]
            await self._apply(self._guard(lambda now: self._core.on_datagram(now, src, data)))
        elif kind == _RESULT:
            token, data = item[1], item[2]
            if data is None or data is _REFUSED:
                refused = data is _REFUSED
                await self._apply(self._guard(
                    lambda now: self._core.on_stream_failed(now, token, refused=refused)))
            else:
                await self._apply(
                    self._guard(lambda now: self._core.on_stream_reply(now, token, data))
                )
        elif kind == _REQUEST:
            src, request, reply = item[1], item[2], item[3]
            answer: bytes | None = None
            effects: list[Effect] = []
            try:
                answer, effects = self._core.on_stream_request(trio.current_time(), src, request)
            except Exception:
                self._core_error("on_stream_request")
            reply.value = answer
            reply.done.set()
            await self._apply(effects)
        elif kind == _CALL:
            fn, reply = item[1], item[2]
            try:
                effects = fn(trio.current_time())
            except Exception as exc:  # local misuse: hand it back to the caller
                reply.error = exc
                reply.done.set()
                return
            await self._apply(effects)
            reply.done.set()

    def _on_timer(self, timer: Timer, now: float) -> list[Effect]:
        return self._core.on_timer(now, timer)

    def _on_failed(self, token: int, now: float) -> list[Effect]:
        return self._core.on_stream_failed(now, token)

    def _guard(self, fn: Callable[[float], list[Effect]]) -> list[Effect]:
        try:
            return fn(trio.current_time())
        except Exception:
            self._core_error(getattr(fn, "__name__", "core"))
            return []

    def _core_error(self, where: str) -> None:
        self._c["core_errors"] += 1
        log.exception("the SWIM core raised in %s (a core bug); the input is dropped", where)

    async def _apply(self, effects: list[Effect]) -> None:
        pending = deque(effects)
        while pending:
            eff = pending.popleft()
            t = type(eff)
            if t is SendDatagram:
                addr = eff.addr  # type: ignore[union-attr]
                try:
                    sealed = self._sealer.seal(addr, eff.data)  # type: ignore[union-attr]
                except (MeshError, ValueError):
                    self._c["datagram_seal_errors"] += 1
                    log.exception("cannot seal a datagram for %s:%s", addr[0], addr[1])
                    continue
                if sealed is None:
                    self._c["datagrams_unsealable"] += 1
                    self._want_handshake(addr)
                    continue
                await self._transport.send_datagram(addr, sealed)
                self._c["datagrams_out"] += 1
            elif t is SetTimer:
                self._timers.push(eff.at, eff.timer)  # type: ignore[union-attr]
            elif t is SendStream:
                send: SendStream = eff  # type: ignore[assignment]
                if self._nursery is None or self._streams_out >= self._limits.streams_out_max:
                    self._c["stream_requests_failed"] += 1
                    pending.extend(self._guard(functools.partial(self._on_failed, send.token)))
                else:
                    self._streams_out += 1
                    self._c["stream_requests_out"] += 1
                    self._nursery.start_soon(self._stream_request, send)
            else:
                self._on_event(eff)  # type: ignore[arg-type]

    def _want_handshake(self, addr: Addr) -> None:
        """Rate-limited: open a stream to `addr` only to run the handshake (key exchange)."""
        if self._nursery is None or self._handshakes >= self._limits.handshakes_max:
            return
        now = trio.current_time()
        last = self._handshake_at.get(addr)
        if last is not None and now - last < self._limits.handshake_retry_s:
            return
        self._handshake_at[addr] = now
        if len(self._handshake_at) > self._limits.handshake_addrs_max:
            del self._handshake_at[next(iter(self._handshake_at))]
        self._handshakes += 1
        self._c["handshakes_requested"] += 1
        self._nursery.start_soon(self._handshake_only, addr)

    async def _handshake_only(self, addr: Addr) -> None:
        try:
            with trio.move_on_after(self._limits.stream_serve_timeout_s):
                raw = await self._transport.connect_stream(addr)
                try:
                    stream = await self._wrap(raw, initiator=True, peer=addr)
                    await stream.aclose()
                finally:
                    await trio.aclose_forcefully(raw)
        except _STREAM_ERRORS as exc:
            log.debug("key exchange with %s:%s failed: %r", addr[0], addr[1], exc)
        finally:
            self._handshakes -= 1

    # --- helper tasks -----------------------------------------------------------------

    async def _receive_datagrams(self) -> None:
        transport, sealer, inbox = self._transport, self._sealer, self._inbox_send
        c = self._c
        while True:
            src, data = await transport.receive_datagram()
            c["datagrams_in"] += 1
            plain = sealer.open(src, data)
            if plain is None:
                c["datagrams_dropped_sealer"] += 1
                continue
            try:
                inbox.send_nowait((_DATAGRAM, src, plain))
            except trio.WouldBlock:
                c["datagrams_dropped_inbox_full"] += 1

    async def _stream_request(self, send: SendStream) -> None:
        reply: bytes | None = None
        try:
            with trio.move_on_after(send.timeout_s):
                raw = await self._transport.connect_stream(send.addr)
                try:
                    stream = await self._wrap(raw, initiator=True, peer=send.addr)
                    await stream.send_message(send.data)
                    reply = await stream.receive_message()
                finally:
                    await trio.aclose_forcefully(raw)
        except _STREAM_ERRORS as exc:
            log.debug("stream request to %s:%s failed: %r", send.addr[0], send.addr[1], exc)
            reply = _REFUSED if _is_refused(exc) else None
        finally:
            self._streams_out -= 1
        if reply is None or reply is _REFUSED:
            self._c["stream_requests_failed"] += 1
        await self._inbox_send.send((_RESULT, send.token, reply))

    async def _serve_stream(self, raw: trio.abc.Stream, peer: Addr) -> None:
        with trio.move_on_after(self._limits.stream_serve_timeout_s):
            try:
                stream = await self._wrap(raw, initiator=False, peer=peer)
            except _STREAM_ERRORS as exc:
                self._c["stream_requests_in_bad"] += 1
                log.debug("stream handshake from %s:%s failed: %r", peer[0], peer[1], exc)
                return
            try:
                request = await stream.receive_message()
            except trio.EndOfChannel:
                # A key exchange only: the peer closed cleanly after the handshake.
                self._c["handshakes_only_in"] += 1
                return
            except _STREAM_ERRORS as exc:
                self._c["stream_requests_in_bad"] += 1
                log.debug("bad stream request from %s:%s: %r", peer[0], peer[1], exc)
                return
            self._c["stream_requests_in"] += 1
            reply = _Reply()
            await self._inbox_send.send((_REQUEST, peer, request, reply))
            await reply.done.wait()
            if reply.value is not None:
                try:
                    await stream.send_message(reply.value)
                except _STREAM_ERRORS:
                    return
