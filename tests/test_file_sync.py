"""examples/file_sync.py: its rules on what it reads from the store and the folder, driven
against an in-memory stand-in for `node.kv` (the real-node run is in test_examples.py)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import blake3
import cbor2
import pytest

from meshcore.errors import ConsistencyError

_SPEC = importlib.util.spec_from_file_location(
    "file_sync", Path(__file__).resolve().parent.parent / "examples" / "file_sync.py")
assert _SPEC is not None and _SPEC.loader is not None
fs = importlib.util.module_from_spec(_SPEC)
sys.modules["file_sync"] = fs
_SPEC.loader.exec_module(fs)


class FakeKv:
    """The part of `node.kv` the sync uses, over one dict shared by the 'sites'."""

    def __init__(self, data: dict[bytes, bytes] | None = None) -> None:
        self.data: dict[bytes, bytes] = {} if data is None else data
        self.fail_puts = False

    async def put(self, ns: str, key: bytes, value: bytes, *, consistency: str) -> None:
        if self.fail_puts:
            raise ConsistencyError("quorum write cannot succeed: home replicas down")
        self.data[key] = value

    async def get(self, ns: str, key: bytes, *, consistency: str) -> bytes | None:
        return self.data.get(key)

    async def delete(self, ns: str, key: bytes, *, consistency: str) -> None:
        self.data.pop(key, None)

    async def scan(self, ns: str, prefix: bytes, *, limit: int) -> list[tuple[bytes, bytes]]:
        return sorted((k, v) for k, v in self.data.items() if k.startswith(prefix))


class FakeNode:
    def __init__(self, kv: FakeKv) -> None:
        self.kv = kv


def site(tmp_path: Path, name: str, kv: FakeKv) -> Any:
    return fs.FolderSync(FakeNode(kv), tmp_path / name / "files", tmp_path / name / "state.cbor", site=name)


async def synced_pair(tmp_path: Path, name: str, body: bytes) -> tuple[FakeKv, Any, Any]:
    """Sites a and b over one store, `name` written at a and applied at b."""
    kv = FakeKv()
    a, b = site(tmp_path, "a", kv), site(tmp_path, "b", kv)
    (a.folder / name).write_bytes(body)
    await a.scan_once()
    await deliver(kv, b)
    assert (b.folder / name).read_bytes() == body
    return kv, a, b


async def deliver(kv: FakeKv, *syncs: Any) -> None:
    """What the watch would hand each site: every manifest now in the store."""
    for s in syncs:
        for key, value in await kv.scan("files", fs.FILES, limit=1000):
            await s.on_change(key, value)


@pytest.mark.parametrize("bad", ["", "/etc/passwd", "../x", "a/../b", "a//b", "./a", "a/", "a\\b", "x\x00y",
                                 ".meshsync-tmp", "d/.meshsync-x/f", "a" * 1001])
def test_paths_from_the_store_must_be_normalised_relative_and_inside(bad: str) -> None:
    with pytest.raises(fs.SyncError):
        fs.safe_relpath(bad)


def test_a_normal_path_is_accepted() -> None:
    assert fs.safe_relpath("notes/week 48/report.txt") == "notes/week 48/report.txt"


def test_manifests_round_trip_and_garbage_is_refused() -> None:
    d = blake3.blake3(b"x").digest()
    m = fs.Manifest(3, d, (d,), None, "albi")
    assert fs.Manifest.decode(m.encode()) == m
    good = cbor2.loads(m.encode())
    bad = [b"\xff\x00", cbor2.dumps([1, 2]), cbor2.dumps({**good, "v": 2}),
           cbor2.dumps({**good, "size": -1}), cbor2.dumps({**good, "size": fs.FILE_BYTES_MAX + 1}),
           cbor2.dumps({**good, "chunks": []}), cbor2.dumps({**good, "digest": b"short"}),
           cbor2.dumps({**good, "parent": 7}), cbor2.dumps({**good, "site": 3}),
           cbor2.dumps({**good, "size": fs.CHUNK_BYTES + 1})]
    for data in bad:
        with pytest.raises(fs.SyncError):
            fs.Manifest.decode(data)


async def test_a_file_goes_from_one_site_to_another_in_chunks_and_a_delete_follows(tmp_path: Path) -> None:
    kv = FakeKv()
    a, b = site(tmp_path, "a", kv), site(tmp_path, "b", kv)
    body = os.urandom(2 * fs.CHUNK_BYTES + 10)
    (a.folder / "d").mkdir()
    (a.folder / "d" / "big.bin").write_bytes(body)
    await a.scan_once()
    assert len([k for k in kv.data if k.startswith(fs.CHUNKS)]) == 3
    await deliver(kv, b)
    assert (b.folder / "d" / "big.bin").read_bytes() == body
    await b.scan_once()  # what b wrote is what it knows: nothing to publish back
    assert b.stats["files_published"] == 0
    (a.folder / "d" / "big.bin").unlink()
    await a.scan_once()
    assert fs._file_key("d/big.bin") not in kv.data
    await b.on_change(fs._file_key("d/big.bin"), None)
    assert not (b.folder / "d" / "big.bin").exists()
    assert list(b.folder.rglob(fs.TEMP_PREFIX + "*")) == []


async def test_a_path_that_escapes_the_folder_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    kv = FakeKv()
    b = site(tmp_path, "b", kv)
    d = blake3.blake3(b"evil").digest()
    kv.data[fs._chunk_key(d)] = b"evil"
    manifest = fs.Manifest(4, blake3.blake3(b"evil").digest(), (d,), None, "x").encode()
    for key in (b"f/../../escaped", b"f//abs", b"f/\xff\xfe", b"f/a/../../escaped"):
        await b.on_change(key, manifest)
    assert b.stats["refused"] == 4
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "b" / "escaped").exists()
    await b.on_change(b"f/ok.txt", b"not a manifest")
    assert b.stats["refused"] == 5 and not (b.folder / "ok.txt").exists()


async def test_a_symlinked_directory_is_not_followed(tmp_path: Path) -> None:
    kv = FakeKv()
    a, b = site(tmp_path, "a", kv), site(tmp_path, "b", kv)
    (a.folder / "link").mkdir()
    (a.folder / "link" / "f.txt").write_bytes(b"hello")
    await a.scan_once()
    outside = tmp_path / "outside"
    outside.mkdir()
    (b.folder / "link").symlink_to(outside, target_is_directory=True)
    await deliver(kv, b)
    assert list(outside.iterdir()) == [] and b.stats["apply_failed"] == 1
    (b.folder / "secret").symlink_to(tmp_path / "a" / "state.cbor")
    await b.scan_once()  # symlinks in the folder are never published
    assert fs._file_key("secret") not in kv.data


async def test_a_damaged_chunk_is_not_written_and_the_apply_is_retried(tmp_path: Path) -> None:
    kv = FakeKv()
    a, b = site(tmp_path, "a", kv), site(tmp_path, "b", kv)
    (a.folder / "f.txt").write_bytes(b"payload")
    await a.scan_once()
    key = fs._chunk_key(blake3.blake3(b"payload").digest())
    kv.data[key] = b"tampered"
    await deliver(kv, b)
    assert not (b.folder / "f.txt").exists() and b.stats["apply_failed"] == 1
    kv.data[key] = b"payload"
    await b.scan_once()  # the retry
    assert (b.folder / "f.txt").read_bytes() == b"payload"


async def test_concurrent_edits_keep_both_versions(tmp_path: Path) -> None:
    kv, a, b = await synced_pair(tmp_path, "plan.txt", b"v1")
    # Both edit before either sees the other's edit; b publishes first.
    (a.folder / "plan.txt").write_bytes(b"v2 from a")
    (b.folder / "plan.txt").write_bytes(b"v2 from b")
    await b.scan_once()
    await deliver(kv, a)  # a's unpublished edit must not be overwritten silently
    assert (a.folder / "plan.txt").read_bytes() == b"v2 from b"
    kept = [p for p in a.folder.iterdir() if p.name.startswith("plan.conflict-a-")]
    assert len(kept) == 1 and kept[0].read_bytes() == b"v2 from a" and kept[0].suffix == ".txt"
    await a.scan_once()  # the kept copy is published like any new file
    await deliver(kv, b)
    assert (b.folder / kept[0].name).read_bytes() == b"v2 from a"


async def test_a_published_version_the_writer_did_not_see_is_kept(tmp_path: Path) -> None:
    kv, a, b = await synced_pair(tmp_path, "p.txt", b"v1")
    (a.folder / "p.txt").write_bytes(b"v2 from a")
    (b.folder / "p.txt").write_bytes(b"v2 from b")
    await a.scan_once()  # a's v2 is in the store, but b's write (later) replaced v1, not it
    await b.scan_once()
    await deliver(kv, a)
    assert (a.folder / "p.txt").read_bytes() == b"v2 from b"
    assert [p.read_bytes() for p in a.folder.glob("p.conflict-a-*.txt")] == [b"v2 from a"]


async def test_an_update_that_replaced_our_version_overwrites_it(tmp_path: Path) -> None:
    kv, a, b = await synced_pair(tmp_path, "p.txt", b"v1")
    (b.folder / "p.txt").write_bytes(b"v2")
    await b.scan_once()
    await deliver(kv, a)
    assert (a.folder / "p.txt").read_bytes() == b"v2"
    assert a.stats["conflicts_kept"] == 0


async def test_a_remote_delete_does_not_remove_a_local_edit(tmp_path: Path) -> None:
    kv, a, b = await synced_pair(tmp_path, "x.txt", b"v1")
    (b.folder / "x.txt").write_bytes(b"edited at b")
    (a.folder / "x.txt").unlink()
    await a.scan_once()
    await b.on_change(fs._file_key("x.txt"), None)
    assert (b.folder / "x.txt").read_bytes() == b"edited at b"
    await b.scan_once()
    assert fs._file_key("x.txt") in kv.data  # published again: the edit wins over the delete


async def test_a_restarted_site_pulls_what_it_missed_and_keeps_what_is_new_here(tmp_path: Path) -> None:
    kv = FakeKv()
    a, b = site(tmp_path, "a", kv), site(tmp_path, "b", kv)
    for name in ("gone.txt", "kept.txt"):
        (a.folder / name).write_bytes(name.encode())
    await a.scan_once()
    await deliver(kv, b)
    # b stops; meanwhile a deletes one file and b's folder gets a new one offline.
    (a.folder / "gone.txt").unlink()
    await a.scan_once()
    (b.folder / "new-here.txt").write_bytes(b"offline work")
    b2 = site(tmp_path, "b", kv)  # restart: state from the file
    assert set(b2.known) == {"gone.txt", "kept.txt"}
    await b2.pull_all()
    assert not (b2.folder / "gone.txt").exists() and (b2.folder / "kept.txt").exists()
    assert (b2.folder / "new-here.txt").exists()
    await b2.scan_once()
    assert fs._file_key("new-here.txt") in kv.data


async def test_a_failed_publish_is_retried_at_the_next_scan(tmp_path: Path) -> None:
    kv = FakeKv()
    a = site(tmp_path, "a", kv)
    (a.folder / "f.txt").write_bytes(b"data")
    kv.fail_puts = True
    await a.scan_once()
    assert a.stats["publish_failed"] == 1 and "f.txt" not in a.known
    kv.fail_puts = False
    await a.scan_once()
    assert fs._file_key("f.txt") in kv.data and a.stats["files_published"] == 1


async def test_a_damaged_state_file_is_survived(tmp_path: Path) -> None:
    kv = FakeKv()
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "state.cbor").write_bytes(b"\xff garbage")
    a = site(tmp_path, "a", kv)
    assert a.known == {}
    (tmp_path / "a" / "state.cbor").write_bytes(cbor2.dumps({"known": {"x": b"short", 3: b"y"}, "mine": 5}))
    assert site(tmp_path, "a", kv).known == {}
