"""Namespace specs: validation with clear errors, and a strict CBOR round trip."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshcore.errors import DecodeError, NamespaceError
from meshcore.kv import REPLICAS_MAX, Namespace, decode_namespace, encode_namespace


def test_defaults_are_two_replicas_anywhere() -> None:
    ns = Namespace(name="photos")
    assert (ns.replicas, ns.regions, ns.unrestricted) == (2, (), True)
    assert ns.allows("anything") and ns.territory() == "any region"


def test_regions_are_sorted_and_deduplicated_and_restrict_placement() -> None:
    ns = Namespace(name="health", replicas=3, regions=("occitanie", "aquitaine", "occitanie"))
    assert ns.regions == ("aquitaine", "occitanie")
    assert ns.allows("occitanie") and not ns.allows("bretagne")
    assert ns.territory() == "{aquitaine, occitanie}"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": ""}, "namespace name"),
        ({"name": "-leading"}, "namespace name"),
        ({"name": "has space"}, "namespace name"),
        ({"name": "x" * 65}, "namespace name"),
        ({"name": b"bytes"}, "namespace name"),
        ({"name": "ok", "replicas": 0}, r"replicas must be an int in \[1, 16\]"),
        ({"name": "ok", "replicas": REPLICAS_MAX + 1}, "replicas"),
        ({"name": "ok", "replicas": True}, "replicas"),
        ({"name": "ok", "replicas": 2.0}, "replicas"),
        ({"name": "ok", "regions": "occitanie"}, "tuple of region names"),
        ({"name": "ok", "regions": ("",)}, "region must be"),
        ({"name": "ok", "regions": (1,)}, "region must be"),
    ],
)
def test_invalid_specs_raise_namespace_error_saying_what_is_allowed(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(NamespaceError, match=match):
        Namespace(**kwargs)  # type: ignore[arg-type]


names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)


@settings(max_examples=100)
@given(names, st.integers(1, REPLICAS_MAX), st.lists(names, max_size=5))
def test_encoding_round_trips(name: str, replicas: int, regions: list[str]) -> None:
    ns = Namespace(name=name, replicas=replicas, regions=tuple(regions))
    assert decode_namespace(encode_namespace(ns)) == ns


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff",
        cbor2.dumps([1, "ok", 2]),
        cbor2.dumps([2, "ok", 2, []]),
        cbor2.dumps([True, "ok", 2, []]),
        cbor2.dumps([1, "ok", 0, []]),
        cbor2.dumps([1, "bad name", 2, []]),
        cbor2.dumps([1, "ok", 2, "occitanie"]),
        cbor2.dumps([1, "ok", 2, [{}]]),
        cbor2.dumps([1, "ok", 2, [[1]]]),
        cbor2.dumps([1, "ok", 2, []]) + b"\x00",
        cbor2.dumps(cbor2.CBORTag(1, [1, "ok", 2, []])),
        b"\x00" * 10_000,
    ],
)
def test_decoding_garbage_raises_only_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_namespace(data)


@settings(max_examples=200)
@given(st.binary(max_size=64))
def test_decoding_random_bytes_never_raises_anything_but_decode_error(data: bytes) -> None:
    try:
        decode_namespace(data)
    except DecodeError:
        pass
