"""SWIM + Lifeguard membership as an I/O-free core (see `_core.Swim`).

Pure pieces, one concern each: `_config` (profiles), `_suspicion` (timeouts),
`_awareness` (local health), `_broadcast` (piggyback queue), `_state` (member table and
transition table), `_core` (the protocol), `_effects` (what the core asks a driver to do).
"""

from ._config import PROFILES, SwimConfig, push_pull_scale_s, retransmit_limit
from ._core import GOSSIP_SEQ, Swim, SwimStatistics
from ._effects import (
    Effect,
    EventKind,
    Member,
    MemberEvent,
    SendDatagram,
    SendStream,
    SetTimer,
    Timer,
    UserBroadcast,
)

__all__ = [
    "Swim", "SwimConfig", "SwimStatistics", "PROFILES", "GOSSIP_SEQ",
    "retransmit_limit", "push_pull_scale_s",
    "Effect", "EventKind", "Member", "MemberEvent", "SendDatagram", "SendStream", "SetTimer",
    "Timer", "UserBroadcast",
]
