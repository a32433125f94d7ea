"""Strict CBOR parsing shared by every meshcore protocol (SWIM, kv, anti-entropy).

`loads_strict` parses exactly one CBOR item: no semantic tags, no trailing bytes, a size
bound checked before parsing, bounded nesting, no repeated or non-string map keys.
`decode_envelope` adds the common frame shape ``[version, type_code, field, ...]`` with a
table of per-type decoders. Both raise
`DecodeError` — and nothing else — for any bad input.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import cbor2

from ..errors import DecodeError

__all__ = ["loads_strict", "decode_envelope"]

T = TypeVar("T")


#: Every tag cbor2 6.x decodes by itself (dates, bignums, decimals, shared references, sets,
#: regexes, UUIDs, IP addresses, complex numbers, self-describe...). Its tag hook only sees
#: the others, so these are overridden one by one: a bignum or a shared reference (which
#: can build a cyclic list) must never come out of a network message. The test that sweeps
#: every tag catches a cbor2 release that adds one.
_BUILTIN_TAGS = (0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256, 258, 260,
                 261, 1004, 43000, 55799)


def _reject_tag(*args: Any) -> Any:
    # cbor2 calls the tag hook for every tag it does not decode itself — as (decoder, tag)
    # in 5.x and (tag, immutable) in 6.x — and wraps what it raises; loads_strict unwraps it.
    tag = next((a for a in args if isinstance(a, cbor2.CBORTag)), None)
    raise DecodeError(f"CBOR tag {getattr(tag, 'tag', '?')} not allowed")


def _builtin_rejecter(tag: int) -> Callable[..., Any]:
    def reject(*_args: Any) -> Any:  # (decoder) in cbor2 5.x, (decoder, immutable) in 6.x
        raise DecodeError(f"CBOR tag {tag} not allowed")
    return reject


#: Nesting of the deepest message any meshcore protocol sends is under 10.
DEPTH_MAX = 32
_DECODER_OPTIONS: dict[str, Any] = {
    "tag_hook": _reject_tag,
    "semantic_decoders": {t: _builtin_rejecter(t) for t in _BUILTIN_TAGS},
    "max_depth": DEPTH_MAX,
    "allow_duplicate_keys": False,
    # map keys of text or bytes only: no crafted integer or tuple keys with colliding hashes
    "strict_hashable_types": True,
}


def loads_strict(data: bytes, *, bytes_max: int, what: str = "message") -> Any:
    """Parse one CBOR item from `data` (at most `bytes_max` bytes, nothing after it).

    Refused as well: any semantic tag, nesting deeper than `DEPTH_MAX`, a map with a
    repeated key or a key that is not text or bytes."""
    if type(data) is not bytes:
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    if len(data) > bytes_max:
        raise DecodeError(f"{what} of {len(data)} bytes exceeds the limit of {bytes_max}")
    fp = io.BytesIO(data)
    try:
        item = cbor2.CBORDecoder(fp, **_DECODER_OPTIONS).decode()
    except Exception as exc:  # cbor2 raises several types on garbage; funnel them all
        inner = exc if isinstance(exc, DecodeError) else (exc.__cause__ or exc.__context__)
        if isinstance(inner, DecodeError):
            raise DecodeError(str(inner)) from None
        raise DecodeError(f"malformed CBOR: {exc.__class__.__name__}: {exc}"[:200]) from None
    trailing = len(data) - fp.tell()
    if trailing:
        raise DecodeError(f"{trailing} trailing bytes after the {what}")
    return item


def decode_envelope(
    data: bytes,
    *,
    version: int,
    decoders: Mapping[int, tuple[int, Callable[[list[Any]], T]]],
    bytes_max: int,
    what: str = "message",
) -> T:
    """Decode ``[version, type_code, *fields]``: `decoders[type_code]` is (arity, build).

    `build` receives the fields and may raise DecodeError, ValueError or TypeError (the
    validating constructors' errors); all become DecodeError.
    """
    top = loads_strict(data, bytes_max=bytes_max, what=what)
    if type(top) is not list or len(top) < 2:
        raise DecodeError(f"not a {what} frame (expected [version, type, ...])")
    if type(top[0]) is not int or top[0] != version:
        raise DecodeError(f"unsupported {what} version {top[0]!r:.20} (this node speaks {version})")
    entry = decoders.get(top[1]) if type(top[1]) is int else None
    if entry is None:
        raise DecodeError(f"unknown {what} type {top[1]!r:.20}")
    arity, build = entry
    if len(top) != arity + 2:
        raise DecodeError(f"{what} type {top[1]} takes {arity} fields, got {len(top) - 2}")
    try:
        return build(top[2:])
    except DecodeError:
        raise
    except (ValueError, TypeError) as exc:
        raise DecodeError(str(exc)[:200]) from None
