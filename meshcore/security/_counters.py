"""Named drop counters and a rate-limited one-line drop log.

Remote garbage costs one counter increment and, at most once per `log_interval_s` per
counter name, one log line (time is passed in, so this is testable and I/O-free apart
from the logging module).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["Counters", "DropLog"]

_log = logging.getLogger("meshcore.security")


class Counters:
    """A bag of named integer counters; `snapshot()` is a frozen copy."""

    __slots__ = ("_values",)

    def __init__(self) -> None:
        self._values: dict[str, int] = {}

    def incr(self, name: str, n: int = 1) -> None:
        self._values[name] = self._values.get(name, 0) + n

    def __getitem__(self, name: str) -> int:
        return self._values.get(name, 0)

    def snapshot(self) -> Mapping[str, int]:
        return MappingProxyType(dict(self._values))


class DropLog:
    """Count a drop and log it, one line per counter name per `log_interval_s` at most."""

    __slots__ = ("counters", "_interval_s", "_next_log_at", "_suppressed", "_logger")

    def __init__(
        self,
        counters: Counters | None = None,
        *,
        log_interval_s: float = 10.0,
        logger: logging.Logger | None = None,
    ) -> None:
        self.counters = counters if counters is not None else Counters()
        self._interval_s = log_interval_s
        self._next_log_at: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._logger = logger or _log

    def drop(self, reason: str, now: float, detail: str = "") -> None:
        self.counters.incr(reason)
        if now < self._next_log_at.get(reason, float("-inf")):
            self._suppressed[reason] = self._suppressed.get(reason, 0) + 1
            return
        self._next_log_at[reason] = now + self._interval_s
        more = self._suppressed.pop(reason, 0)
        extra = f" (+{more} more since last line)" if more else ""
        self._logger.warning("dropped: %s%s%s", reason, f": {detail}" if detail else "", extra)
