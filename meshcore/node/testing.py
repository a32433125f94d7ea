"""Helpers for tests and demos: throwaway credentials and a wall clock on virtual time.

`SecureCluster(names)` makes a fresh authority and one certified node per name (in
memory; `directory=` also writes the files for agent processes); `config(name, **fields)`
is a `NodeConfig` carrying that node's credentials. `virtual_wall_clock()` maps trio's
clock (a `MockClock` in tier-2 tests) onto Unix time, so certificates stay valid while
virtual hours pass.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import trio

from ..security import Credentials, ThrowawayCluster, make_throwaway_cluster
from ._config import NodeConfig

__all__ = ["SecureCluster", "virtual_wall_clock", "WALL_CLOCK_BASE_S", "core_admits_certificates"]

#: A fixed Unix time for tests on virtual time (2026-01-01).
WALL_CLOCK_BASE_S = 1_767_225_600.0


def core_admits_certificates() -> bool:
    """Does the SWIM core carry certificates in Alive records and call `admit`? (Without
    it, a secure node only learns the certificates of peers it handshakes with directly.)"""
    import inspect

    from ..swim import Swim

    params = inspect.signature(Swim).parameters
    return "cert" in params and "admit" in params


def virtual_wall_clock(base_s: float = WALL_CLOCK_BASE_S) -> Callable[[], float]:
    return lambda: base_s + trio.current_time()


class SecureCluster:
    def __init__(
        self,
        names: Sequence[str],
        *,
        now: float | None = None,
        cluster: str = "test",
        directory: str | os.PathLike[str] | None = None,
        days: float = 30,
    ) -> None:
        self.now = time.time() if now is None else now
        self.cluster: ThrowawayCluster = make_throwaway_cluster(
            list(names), now=self.now, cluster=cluster, directory=directory, days=days
        )
        self.credentials: dict[str, Credentials] = dict(zip(names, self.cluster.nodes, strict=True))

    def issue(self, name: str, **kwargs: Any) -> Credentials:
        """Certify one more node in this cluster."""
        creds = self.cluster.issue(name, now=self.now, **kwargs)
        self.credentials[name] = creds
        return creds

    def config(self, name: str, **fields: Any) -> NodeConfig:
        creds = self.credentials.get(name) or self.issue(name)
        return NodeConfig(name=name, credentials=creds, **fields)
