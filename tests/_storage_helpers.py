"""What the store's tests share: node ids, a namespace, records, and an open store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from meshcore.kv import Namespace, Record, Stamp, as_key
from meshcore.runtime._storage import Store, open_store

A, B, C = (bytes([i]) * 16 for i in (1, 2, 3))
NS = Namespace(name="photos", replicas=2, regions=("occitanie",))


def rec(key: bytes | str, value: bytes | None, us: int, node: bytes = A) -> Record:
    return Record(as_key(key), value, Stamp(us, 0, node))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with open_store(tmp_path / "node.db", synchronous="normal") as s:
        await s.put_namespace(NS)
        yield s
