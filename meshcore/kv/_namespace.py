"""Namespace specs: a name, a replication factor and the territories data may live in.

Territory rule: `regions` lists the certified regions whose nodes may hold the
namespace's data; an EMPTY tuple means "no territorial restriction" (any region). A
sovereignty-bound namespace must therefore name its regions explicitly.

Specs are validated on construction (a spec that exists is valid) and travel as a small
versioned CBOR array (`encode_namespace` / `decode_namespace`) for persistence and gossip;
decoding raises only `DecodeError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import cbor2

from ..errors import DecodeError, NamespaceError
from ..wire import loads_strict

__all__ = [
    "NAME_CHARS_MAX",
    "REPLICAS_DEFAULT",
    "REPLICAS_MAX",
    "REGIONS_MAX",
    "NAMESPACE_BYTES_MAX",
    "Namespace",
    "encode_namespace",
    "decode_namespace",
    "check_name",
]

NAME_CHARS_MAX = 64
REPLICAS_DEFAULT = 2
REPLICAS_MAX = 16
REGIONS_MAX = 64
#: An encoded spec is far smaller; the bound keeps a hostile blob from costing memory.
NAMESPACE_BYTES_MAX = 8 * 1024
_FORMAT_VERSION = 1
# Names end up in logs, SQLite rows and error messages: keep them boring.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")


def check_name(what: str, value: object) -> str:
    """Validate a namespace or region name; raise `NamespaceError` saying what is allowed."""
    if type(value) is not str or not 1 <= len(value) <= NAME_CHARS_MAX or not _NAME_RE.match(value):
        raise NamespaceError(
            f"{what} must be 1-{NAME_CHARS_MAX} chars of letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit; got {value!r:.80}"
        )
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Namespace:
    """A namespace spec. `regions` is stored sorted and without duplicates."""

    name: str
    replicas: int = REPLICAS_DEFAULT
    regions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_name("namespace name", self.name)
        if type(self.replicas) is not int or not 1 <= self.replicas <= REPLICAS_MAX:
            raise NamespaceError(
                f"namespace {self.name!r}: replicas must be an int in [1, {REPLICAS_MAX}], "
                f"got {self.replicas!r:.40}"
            )
        if isinstance(self.regions, (str, bytes)) or not isinstance(self.regions, (tuple, list, frozenset, set)):
            raise NamespaceError(
                f"namespace {self.name!r}: regions must be a tuple of region names "
                f"(empty = any region), got {self.regions!r:.80}"
            )
        regions = tuple(sorted({check_name("region", r) for r in self.regions}))
        if len(regions) > REGIONS_MAX:
            raise NamespaceError(f"namespace {self.name!r}: at most {REGIONS_MAX} regions, got {len(regions)}")
        object.__setattr__(self, "regions", regions)

    @property
    def unrestricted(self) -> bool:
        """True when the namespace may be stored in any region."""
        return not self.regions

    def allows(self, region: str) -> bool:
        """Whether a node certified for `region` may hold this namespace's data."""
        return not self.regions or region in self.regions

    def territory(self) -> str:
        """The allowed regions as text for messages: ``{a, b}`` or ``any region``."""
        return "{" + ", ".join(self.regions) + "}" if self.regions else "any region"


def encode_namespace(ns: Namespace) -> bytes:
    return cbor2.dumps([_FORMAT_VERSION, ns.name, ns.replicas, list(ns.regions)])


def decode_namespace(data: bytes) -> Namespace:
    """Decode `encode_namespace` output; any other input raises `DecodeError`."""
    if type(data) is not bytes or len(data) > NAMESPACE_BYTES_MAX:
        raise DecodeError(f"a namespace spec is bytes of at most {NAMESPACE_BYTES_MAX}")
    top = loads_strict(data, bytes_max=NAMESPACE_BYTES_MAX, what="namespace spec")
    if type(top) is not list or len(top) != 4 or top[0] != _FORMAT_VERSION or type(top[0]) is not int:
        raise DecodeError("not a version-1 namespace spec [1, name, replicas, regions]")
    _, name, replicas, regions = top
    if type(regions) is not list:
        raise DecodeError("namespace regions must be an array")
    try:
        return Namespace(name=name, replicas=replicas, regions=tuple(regions))
    except NamespaceError as exc:
        raise DecodeError(str(exc)[:200]) from None
    except TypeError as exc:  # an unhashable region (a map or array) in the list
        raise DecodeError(f"bad region in namespace spec: {exc}"[:200]) from None
