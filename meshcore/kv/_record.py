"""Records and the last-writer-wins merge rule.

A `Record` is one version of one key: a value (bytes) or a tombstone (`value is None`),
with the HLC `Stamp` of its write. Keys are bytes; at the API a str key is its UTF-8
encoding (`as_key`: ``"a"`` and ``b"a"`` are the same key). Limits: keys up to
`KEY_BYTES_MAX`, values up to `VALUE_BYTES_MAX` (1 MiB).

`Record(key, value, stamp)` takes its fields as they are stored: a key that is not bytes, a
value that is not bytes or None, a stamp that is not a `Stamp` is refused with `RecordError`
in pure Python and with `TypeError` when this module is compiled (mypyc checks the declared
field types before `__post_init__` runs); a key or value out of bounds is a `RecordError`
either way. Callers building records from outside input (`as_key`, `check_value` first, or
catching both) get the same outcome on both paths.

Merge (`merge`, `newer`): the greater stamp wins. Two records with equal stamps come from
the same writer at the same instant and should be equal; if a bug or a hostile peer makes
them differ, a fixed tie-break (tombstone first, then the larger value bytes) still lets
every replica pick the same one, so merge stays commutative, associative and idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import RecordError
from ._hlc import STAMP_BYTES, Stamp

__all__ = ["KEY_BYTES_MAX", "VALUE_BYTES_MAX", "Record", "as_key", "check_value", "merge", "newer"]

KEY_BYTES_MAX = 1024
VALUE_BYTES_MAX = 1024 * 1024


def as_key(key: object) -> bytes:
    """Normalise a key (bytes or str) to bytes; raise `RecordError` for anything else."""
    if type(key) is str:
        key = key.encode("utf-8")
    if type(key) is not bytes:
        raise RecordError(f"a key is bytes or str, got {type(key).__name__}")
    if not 1 <= len(key) <= KEY_BYTES_MAX:
        raise RecordError(f"a key is 1 to {KEY_BYTES_MAX} bytes, got {len(key)}")
    return key


def check_value(value: object) -> bytes | None:
    """Validate a value (bytes, or None for a tombstone); raise `RecordError` otherwise."""
    if value is None:
        return None
    if type(value) is not bytes:
        raise RecordError(f"a value is bytes (None is a delete), got {type(value).__name__}")
    if len(value) > VALUE_BYTES_MAX:
        raise RecordError(
            f"a value is at most {VALUE_BYTES_MAX} bytes (1 MiB), got {len(value)}: "
            "split it into several keys"
        )
    return value


@dataclass(frozen=True, slots=True)
class Record:
    """One version of a key. Constructing one validates every field."""

    key: bytes
    value: bytes | None
    stamp: Stamp

    def __post_init__(self) -> None:
        if type(self.key) is not bytes:
            raise RecordError(f"a record's key is bytes (as_key converts a str), got {type(self.key).__name__}")
        as_key(self.key)
        check_value(self.value)
        if type(self.stamp) is not Stamp:
            raise RecordError(f"stamp must be a Stamp, got {type(self.stamp).__name__}")

    @property
    def is_tombstone(self) -> bool:
        return self.value is None

    def size_bytes(self) -> int:
        """Approximate payload size, for batching limits."""
        return len(self.key) + (len(self.value) if self.value is not None else 0) + STAMP_BYTES


def _rank(r: Record) -> tuple[Stamp, bool, bytes]:
    # Equal stamps: tombstone (True) ranks above a value, then the larger value.
    return (r.stamp, r.value is None, r.value or b"")


def newer(candidate: Record, current: Record | None) -> bool:
    """Whether `candidate` replaces `current` under last-writer-wins."""
    if current is None:
        return True
    if candidate.key != current.key:
        raise RecordError("cannot compare versions of different keys")
    return _rank(candidate) > _rank(current)


def merge(a: Record, b: Record) -> Record:
    """The winner of two versions of one key (commutative, associative, idempotent)."""
    return a if not newer(b, a) else b
