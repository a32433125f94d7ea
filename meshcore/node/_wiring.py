"""What a node does with the core's events before the application sees them.

`EventRouter.on_event` is the driver's `on_event`: it runs in the driver task, so it never
awaits. It teaches the security layer where admitted members listen (so datagrams can be
sealed to them), teaches the WebSocket transport which members take WebSocket links, keeps
system broadcasts (revocations) away from `Node.events()`, and hands them to the node's
system task (bounded queue; overflow is counted), which may call back into the core.

`rebroadcast_interval_s` spreads the re-announcement of known revocations (so members that
joined later learn them): each node waits `base_s * live members` (jittered), so the whole
cluster re-announces about once per `base_s`, whatever its size.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

import trio

from ..errors import ConfigError
from ..runtime._security import SYSTEM_PREFIX, MeshSecurity
from ..runtime._ws import WebSocketTransport, parse_ws_url
from ..swim._effects import EventKind, MemberEvent, UserBroadcast
from ._events import Event

__all__ = ["EventRouter", "WS_TAG", "rebroadcast_interval_s"]

log = logging.getLogger("meshcore.node")

WS_TAG = "ws"
SYSTEM_QUEUE_MAX = 256
_LIVE_KINDS = (EventKind.JOINED, EventKind.ALIVE, EventKind.UPDATED)


def rebroadcast_interval_s(base_s: float, live_members: int, rng: random.Random) -> float:
    return base_s * max(1, live_members) * rng.uniform(0.5, 1.5)


class EventRouter:
    def __init__(
        self,
        *,
        publish: Callable[[Event], None],
        security: MeshSecurity | None,
        ws: WebSocketTransport | None,
        self_id: bytes,
    ) -> None:
        self._publish = publish
        self._security = security
        self._ws = ws
        self._self_id = self_id
        self.system_send, self.system_receive = trio.open_memory_channel[bytes](SYSTEM_QUEUE_MAX)
        self.system_dropped = 0
        self.system_foreign = 0

    def on_event(self, event: Event) -> None:
        if type(event) is UserBroadcast:
            if event.payload.startswith(SYSTEM_PREFIX):
                if self._security is None:
                    self.system_foreign += 1
                    return
                try:
                    self.system_send.send_nowait(event.payload)
                except trio.WouldBlock:
                    self.system_dropped += 1
                return
        elif type(event) is MemberEvent and event.member.node != self._self_id:
            m = event.member
            if event.kind in _LIVE_KINDS:
                if self._security is not None:
                    self._security.learn_address(m.node, m.addr)
                if self._ws is not None and self._ws.has_listener:
                    self._ws.set_route(m.addr, self._ws_endpoint(m.meta.tag_dict.get(WS_TAG)))
        self._publish(event)

    @staticmethod
    def _ws_endpoint(tag: str | None) -> tuple[str, int] | None:
        if not tag:
            return None
        try:
            return parse_ws_url(tag)
        except ConfigError:
            return None
