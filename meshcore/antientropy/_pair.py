"""Run one whole session between two local replicas: the helper of tests, the simulator
and the benchmark (the trio driver does the same over a stream)."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from ._config import ReconcileConfig
from ._ranges import FULL_RANGE, KeyRange
from ._session import ReconcileSession, SessionStatistics
from ._store import ReplicaStore

__all__ = ["PairResult", "reconcile_pair"]


@dataclass(frozen=True, slots=True)
class PairResult:
    frames: int
    #: One frame each way is a round trip; a last frame with no answer counts as one too.
    round_trips: int
    bytes_total: int
    records_sent: int
    verified: bool | None
    initiator: SessionStatistics
    responder: SessionStatistics


def reconcile_pair(
    initiator: ReplicaStore,
    responder: ReplicaStore,
    *,
    rng: random.Random,
    ranges: Sequence[KeyRange] = (FULL_RANGE,),
    config: ReconcileConfig | None = None,
) -> PairResult:
    """Reconcile `initiator` with `responder` in memory; returns the traffic figures."""
    a = ReconcileSession(initiator, initiator=True, rng=rng, ranges=ranges, config=config)
    b = ReconcileSession(responder, initiator=False, config=config)
    frame: bytes | None = a.start()
    frames = 1
    sides = (b, a)
    turn = 0
    while frame is not None and not sides[turn].done:
        frame = sides[turn].receive(frame)
        if frame is not None:
            frames += 1
        turn ^= 1
    sa, sb = a.statistics(), b.statistics()
    verified = sa.verified if sa.verified is not None else sb.verified
    return PairResult(
        frames=frames,
        round_trips=math.ceil(frames / 2),
        bytes_total=sa.bytes_sent + sb.bytes_sent,
        records_sent=sa.records_sent + sb.records_sent,
        verified=verified,
        initiator=sa,
        responder=sb,
    )
