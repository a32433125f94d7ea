"""Keep a folder in step across sites through the replicated key-value store.

Each site runs a `FolderSync` beside its node. It publishes what changes in its folder (a
scan every `interval_s`) and applies what the other sites published, as its node's
`kv.watch` reports the versions applied locally. The namespace keeps one copy per site
(`replicas` = number of sites), so every site holds every version and its watch sees every
change, also those that reach it late (anti-entropy, hinted handoff) after it was down; at
start a site also pulls the whole namespace (`kv.scan`) for what it missed while stopped.

Layout of the namespace:
- `c/<blake3 of the bytes>`: a chunk of file content (at most `CHUNK_BYTES`). Chunks are
  named by their hash: one shared by two files or two versions is stored once, and a
  fetched chunk is checked against its name.
- `f/<relative path>`: the file's manifest (CBOR: size, whole-file hash, chunk hashes, the
  hash of the version it replaced, the writing site). A deleted file is a deleted key.
A site writes the chunks, then the manifest, both at `quorum`, and reads chunks at `quorum`:
a site that sees a manifest finds every chunk it names.

Conflicts: the store keeps the newest manifest (last writer wins). A manifest names the
version its writer replaced. A site about to overwrite a version made here (published by
this site, or edited and not yet published) that the writer did not replace (two sites
edited the same file) first keeps it as `NAME.conflict-SITE-HASH.EXT`, which it then
publishes like any new file: an edit made at a site is never lost without a trace. Without
version vectors this may also keep a copy that was not needed (a site that missed several
versions of a file it wrote). An edit that races a delete wins (the file comes back).

Everything read from the store is untrusted: a path must be relative, normalised and stay
inside the folder (no `..`, no absolute path, no symlinked directory on the way); a manifest
must decode to the expected fields and bounds; a chunk must hash to its name. What fails is
logged and counted in `stats`, and retried at the next scan; nothing crashes the sync.

    python examples/file_sync.py    # three sites in one process; one loses power, comes back
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import blake3
import cbor2
import trio

import meshcore
from meshcore.errors import MeshError
from meshcore.node.testing import SecureCluster

log = logging.getLogger("file_sync")

NAMESPACE = "files"
CHUNK_BYTES = 256 * 1024
FILE_BYTES_MAX = 256 * 1024 * 1024
PATH_BYTES_MAX = 1000  # a kv key is at most 1024 bytes, "f/" included
MANIFEST_VERSION = 1
TEMP_PREFIX = ".meshsync-"
FILES, CHUNKS = b"f/", b"c/"


class SyncError(Exception):
    """Something read from the store or the folder that this site cannot apply."""


@dataclass(frozen=True)
class Manifest:
    size: int
    digest: bytes
    chunks: tuple[bytes, ...]
    parent: bytes | None  # the version the writer replaced (None: a new file for it)
    site: str

    def encode(self) -> bytes:
        return cbor2.dumps({"v": MANIFEST_VERSION, "size": self.size, "digest": self.digest,
                            "chunks": list(self.chunks), "parent": self.parent, "site": self.site})

    @staticmethod
    def decode(data: bytes) -> Manifest:
        try:
            m = cbor2.loads(data)
        except Exception as exc:  # cbor2 raises several types on garbage
            raise SyncError(f"manifest is not CBOR: {exc}") from None
        if not isinstance(m, dict) or m.get("v") != MANIFEST_VERSION:
            raise SyncError("manifest of an unknown version")
        size, digest, chunks, parent, site = (m.get(k) for k in ("size", "digest", "chunks", "parent", "site"))
        if type(size) is not int or not 0 <= size <= FILE_BYTES_MAX:
            raise SyncError(f"manifest size {size!r:.20} out of bounds")
        if type(digest) is not bytes or not _is_digest(digest) or (parent is not None and not _is_digest(parent)):
            raise SyncError("manifest hashes must be 32 bytes")
        if (not isinstance(chunks, list) or len(chunks) != -(-size // CHUNK_BYTES)
                or not all(_is_digest(c) for c in chunks)):
            raise SyncError("manifest chunks do not match its size")
        if type(site) is not str or len(site) > 64:
            raise SyncError("manifest site must be a short string")
        return Manifest(size, digest, tuple(chunks), parent, site)


def _is_digest(v: object) -> bool:
    return type(v) is bytes and len(v) == 32


def safe_relpath(text: str) -> str:
    """`text` as a relative POSIX path that stays inside the folder, or SyncError."""
    if not text or "\x00" in text or "\\" in text or len(text.encode()) > PATH_BYTES_MAX:
        raise SyncError(f"bad path {text!r:.80}")
    p = PurePosixPath(text)
    if p.is_absolute() or str(p) != text or any(part in ("", ".", "..") for part in p.parts):
        raise SyncError(f"path {text!r:.80} is not a normalised relative path")
    if any(part.startswith(TEMP_PREFIX) for part in p.parts):
        raise SyncError(f"path {text!r:.80} uses the sync's reserved prefix")
    return text


def _file_key(rel: str) -> bytes:
    return FILES + rel.encode()


def _chunk_key(digest: bytes) -> bytes:
    return CHUNKS + digest.hex().encode()


def _hash_file(path: Path) -> tuple[int, bytes, tuple[bytes, ...]] | None:
    """(size, whole-file hash, chunk hashes) of a regular file, None if it is gone."""
    whole, chunks, size = blake3.blake3(), [], 0
    try:
        with open(path, "rb") as f:
            while block := f.read(CHUNK_BYTES):
                whole.update(block)
                chunks.append(blake3.blake3(block).digest())
                size += len(block)
    except (FileNotFoundError, IsADirectoryError):
        return None
    return size, whole.digest(), tuple(chunks)


def _read_chunk(path: Path, index: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(index * CHUNK_BYTES)
        return f.read(CHUNK_BYTES)


def _write_atomically(target: Path, parts: list[bytes]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            for part in parts:
                f.write(part)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class FolderSync:
    """Sync `folder` with the other sites through `node`'s kv store. `state` is a file
    (outside the folder) where this site keeps which version of each path it last synced,
    so that after a restart it can tell a file deleted elsewhere from a file added here."""

    def __init__(self, node: Any, folder: Path, state: Path, *, site: str, interval_s: float = 2.0) -> None:
        self.node = node
        self.folder = folder
        self.state = state
        self.site = site
        self.interval_s = interval_s
        self.known: dict[str, bytes] = {}  # path -> hash of the version last synced here
        self.mine: set[str] = set()  # paths whose synced version this site published
        self.stats: Counter[str] = Counter()
        self._stat_cache: dict[str, tuple[int, int, tuple[int, bytes, tuple[bytes, ...]]]] = {}
        self._retry: dict[str, Manifest | None] = {}  # what failed to apply (None: a delete)
        self._lock = trio.Lock()
        self.folder.mkdir(parents=True, exist_ok=True)
        self._load_state()

    # --- state --------------------------------------------------------------------------

    def _load_state(self) -> None:
        try:
            raw = cbor2.loads(self.state.read_bytes())
        except FileNotFoundError:
            return
        except Exception as exc:  # a damaged state file: start afresh (the scan republishes)
            log.warning("%s: state file %s unreadable (%s); starting without it", self.site, self.state, exc)
            return
        known, mine = (raw.get("known"), raw.get("mine")) if isinstance(raw, dict) else (None, None)
        if isinstance(known, dict):
            self.known = {k: v for k, v in known.items() if type(k) is str and _is_digest(v)}
        if isinstance(mine, list):
            self.mine = {k for k in mine if k in self.known}

    def _synced(self, rel: str, digest: bytes | None, *, mine: bool = False) -> None:
        """Record the version of `rel` now in step with the store (None: deleted)."""
        if digest is None:
            self.known.pop(rel, None)
            self._stat_cache.pop(rel, None)
        else:
            self.known[rel] = digest
        if mine and digest is not None:
            self.mine.add(rel)
        else:
            self.mine.discard(rel)
        _write_atomically(self.state, [cbor2.dumps({"known": self.known, "mine": sorted(self.mine)})])

    # --- the local folder ---------------------------------------------------------------

    def _target(self, rel: str) -> Path:
        """Where `rel` lives locally; SyncError if a directory on the way is a symlink."""
        path = self.folder.joinpath(*PurePosixPath(rel).parts)
        if self.folder not in path.parents:  # safe_relpath's rules, checked again here
            raise SyncError(f"path {rel!r:.80} is outside the folder")
        for parent in path.parents:
            if parent == self.folder:
                break
            if parent.is_symlink():
                raise SyncError(f"path {rel!r:.80} goes through a symlink")
        if path.is_symlink():
            raise SyncError(f"path {rel!r:.80} is a symlink here")
        return path

    def _local_files(self) -> dict[str, tuple[int, int]]:
        """rel path -> (size, mtime_ns) of every regular file (symlinks are not followed)."""
        out: dict[str, tuple[int, int]] = {}
        for dirpath, dirnames, filenames in os.walk(self.folder):
            dirnames[:] = [d for d in dirnames if not d.startswith(TEMP_PREFIX)]
            for name in filenames:
                if name.startswith(TEMP_PREFIX):
                    continue
                path = Path(dirpath, name)
                try:
                    st = path.lstat()
                except FileNotFoundError:
                    continue
                if not path.is_symlink() and path.is_file():
                    out[path.relative_to(self.folder).as_posix()] = (st.st_size, st.st_mtime_ns)
        return out

    async def _local_version(self, rel: str, stat: tuple[int, int] | None = None
                             ) -> tuple[int, bytes, tuple[bytes, ...]] | None:
        """(size, hash, chunk hashes) of the local file, rehashed only when it changed."""
        path = self._target(rel)
        if stat is None:
            try:
                st = path.lstat()
            except FileNotFoundError:
                return None
            stat = (st.st_size, st.st_mtime_ns)
        cached = self._stat_cache.get(rel)
        if cached is not None and cached[:2] == stat:
            return cached[2]
        version = await trio.to_thread.run_sync(_hash_file, path)
        if version is not None:
            self._stat_cache[rel] = (*stat, version)
        return version

    # --- publishing (local changes -> store) --------------------------------------------

    async def scan_once(self) -> None:
        """Publish every local file that changed since it was last synced, and the
        deletion of every synced file that is gone; then retry what failed to apply."""
        async with self._lock:
            files = await trio.to_thread.run_sync(self._local_files)
            for rel, stat in sorted(files.items()):
                try:
                    safe_relpath(rel)
                    if stat[0] > FILE_BYTES_MAX:
                        raise SyncError(f"{rel}: {stat[0]} bytes is over {FILE_BYTES_MAX}")
                    version = await self._local_version(rel, stat)
                    if version is not None and version[1] != self.known.get(rel):
                        await self._publish(rel, version)
                except (SyncError, MeshError, OSError) as exc:
                    self.stats["publish_failed"] += 1
                    log.warning("%s: not published: %s", self.site, exc)
            for rel in [r for r in self.known if r not in files]:
                try:
                    await self.node.kv.delete(NAMESPACE, _file_key(rel), consistency="quorum")
                except MeshError as exc:
                    self.stats["publish_failed"] += 1
                    log.warning("%s: deletion of %s not published: %s", self.site, rel, exc)
                    continue
                self._synced(rel, None)
                self.stats["deletes_published"] += 1
        for rel, manifest in list(self._retry.items()):
            await self._apply(rel, manifest)

    async def _publish(self, rel: str, version: tuple[int, bytes, tuple[bytes, ...]]) -> None:
        size, digest, chunks = version
        path = self._target(rel)
        for i, chunk_digest in enumerate(chunks):
            data = await trio.to_thread.run_sync(_read_chunk, path, i)
            if blake3.blake3(data).digest() != chunk_digest:
                raise SyncError(f"{rel} changed while it was published; next scan")
            await self.node.kv.put(NAMESPACE, _chunk_key(chunk_digest), data, consistency="quorum")
        manifest = Manifest(size, digest, chunks, self.known.get(rel), self.site)
        await self.node.kv.put(NAMESPACE, _file_key(rel), manifest.encode(), consistency="quorum")
        self._synced(rel, digest, mine=True)
        self.stats["files_published"] += 1

    # --- applying (store -> local folder) -----------------------------------------------

    async def _apply(self, rel: str, manifest: Manifest | None) -> None:
        """Bring the local file to `manifest` (None: deleted); on failure keep it for a retry."""
        async with self._lock:
            try:
                if manifest is None:
                    await self._apply_delete(rel)
                else:
                    await self._apply_manifest(rel, manifest)
            except (SyncError, MeshError, OSError) as exc:
                self.stats["apply_failed"] += 1
                self._retry[rel] = manifest
                log.warning("%s: %s not applied yet: %s", self.site, rel, exc)
            else:
                self._retry.pop(rel, None)

    async def _apply_manifest(self, rel: str, m: Manifest) -> None:
        local = await self._local_version(rel)
        if local is not None and local[1] == m.digest:
            if self.known.get(rel) != m.digest:
                self._synced(rel, m.digest)
            return
        path = self._target(rel)
        made_here = local is not None and (local[1] != self.known.get(rel) or rel in self.mine)
        if local is not None and made_here and local[1] != m.parent:
            # Edited here and elsewhere: keep ours under a name of its own.
            keep = path.with_name(f"{path.stem}.conflict-{self.site}-{local[1].hex()[:8]}{path.suffix}")
            os.replace(path, keep)
            self.stats["conflicts_kept"] += 1
            log.warning("%s: %s was also edited at %s; this site's version kept as %s",
                        self.site, rel, m.site, keep.name)
        parts = []
        for chunk_digest in m.chunks:
            data = await self.node.kv.get(NAMESPACE, _chunk_key(chunk_digest), consistency="quorum")
            if data is None or blake3.blake3(data).digest() != chunk_digest:
                raise SyncError(f"chunk {chunk_digest.hex()[:12]} of {rel} missing or damaged")
            parts.append(data)
        if sum(map(len, parts)) != m.size:
            raise SyncError(f"{rel}: chunks add up to another size than the manifest's")
        await trio.to_thread.run_sync(_write_atomically, path, parts)
        self._stat_cache.pop(rel, None)
        self._synced(rel, m.digest)
        self.stats["files_applied"] += 1

    async def _apply_delete(self, rel: str) -> None:
        local = await self._local_version(rel)
        if local is not None and local[1] != self.known.get(rel):
            return  # edited here since it was synced: the next scan publishes it again
        if local is not None:
            self._target(rel).unlink(missing_ok=True)
            self.stats["deletes_applied"] += 1
        if rel in self.known or local is not None:
            self._synced(rel, None)

    async def on_change(self, key: bytes, value: bytes | None) -> None:
        """One change of a `f/` key, from the watch or the start-up pull."""
        try:
            rel = safe_relpath(key[len(FILES):].decode())
            manifest = None if value is None else Manifest.decode(value)
        except (SyncError, UnicodeDecodeError) as exc:
            self.stats["refused"] += 1
            log.warning("%s: refused a change of %r: %s", self.site, key[:80], exc)
            return
        await self._apply(rel, manifest)

    async def pull_all(self) -> None:
        """Apply the store's whole namespace: what changed while this site was not watching."""
        entries = await self.node.kv.scan(NAMESPACE, FILES, limit=100_000)
        present = set()
        for key, value in entries:
            present.add(key)
            await self.on_change(key, value)
        for rel in [r for r in self.known if _file_key(r) not in present]:
            await self._apply(rel, None)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with self.node.kv.watch(NAMESPACE, FILES) as changes, trio.open_nursery() as nursery:
            await self.pull_all()  # after the watch opened: nothing falls in between
            nursery.start_soon(self._scan_loop)
            task_status.started()
            seen_dropped = 0
            async for change in changes:
                await self.on_change(change.key, change.value)
                if changes.dropped != seen_dropped:  # the watch overflowed: catch up
                    seen_dropped = changes.dropped
                    await self.pull_all()

    async def _scan_loop(self) -> None:
        while True:
            await self.scan_once()
            await trio.sleep(self.interval_s)


# --- the demonstration ----------------------------------------------------------------------

SITES = ["toulouse", "albi", "nimes"]


async def _wait(what: str, cond: Any, timeout_s: float = 30.0) -> float:
    """Seconds until `cond()` holds; a clear error naming `what` after `timeout_s`."""
    t0 = time.monotonic()
    with trio.move_on_after(timeout_s):
        while not cond():
            await trio.sleep(0.05)
        return time.monotonic() - t0
    raise RuntimeError(f"timed out after {timeout_s:g} s waiting for {what}")


def _same(folders: dict[str, Path], rel: str, data: bytes | None, sites: list[str]) -> bool:
    for s in sites:
        p = folders[s] / rel
        if data is None:
            if p.exists():
                return False
        elif not p.is_file() or p.read_bytes() != data:
            return False
    return True


async def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    root = Path(tempfile.mkdtemp(prefix="file-sync-"))
    # A throwaway authority; each certificate says the node's site and region, which is what
    # placement trusts (in production: `meshcore authority sign --site ... --region ...`).
    cluster = SecureCluster([])
    for s in SITES:
        cluster.issue(f"{s}-1", site=s, region="occitanie")
    folders = {s: root / s / "files" for s in SITES}
    scopes: dict[str, trio.CancelScope] = {}
    syncs: dict[str, FolderSync] = {}
    seeds: list[meshcore.Addr] = []

    async def site(name: str, *, task_status: trio.TaskStatus[meshcore.Node] = trio.TASK_STATUS_IGNORED) -> None:
        cfg = cluster.config(f"{name}-1", site=name, region="occitanie", seeds=tuple(seeds), profile="local",
                             data_dir=root / name / "data", kv_port=0)
        with trio.CancelScope() as scope:
            scopes[name] = scope
            async with meshcore.open_node(cfg) as node:
                task_status.started(node)
                await trio.sleep_forever()

    async def start_sync(name: str, node: meshcore.Node, nursery: trio.Nursery) -> None:
        syncs[name] = FolderSync(node, folders[name], root / name / "sync-state.cbor", site=name, interval_s=0.2)
        await nursery.start(syncs[name].run)

    async with trio.open_nursery() as nursery:
        nodes = {}
        for s in SITES:
            nodes[s] = await nursery.start(site, s)
            seeds[:] = seeds or [nodes[s].addr]
        await _wait("the sites", lambda: all(n.kv.statistics()["peers"] == len(SITES) - 1 for n in nodes.values()))
        await nodes["toulouse"].kv.create_namespace(NAMESPACE, replicas=len(SITES), regions=["occitanie"])
        await _wait("the namespace", lambda: all(
            any(ns.name == NAMESPACE for ns in n.kv.namespaces()) for n in nodes.values()))
        for s in SITES:
            await start_sync(s, nodes[s], nursery)
        print(f"{len(SITES)} sites, namespace {NAMESPACE!r}: one copy per site, every site syncs {folders['toulouse'].name}/")

        report = b"Attendance, week 48: 412 pupils.\n"
        (folders["toulouse"] / "notes").mkdir()
        (folders["toulouse"] / "notes" / "report.txt").write_bytes(report)
        took = await _wait("report", lambda: _same(folders, "notes/report.txt", report, SITES))
        print(f"notes/report.txt written at toulouse: at albi and nimes after {took:.1f} s")

        survey = secrets.token_bytes(3 * 1024 * 1024 + 5)
        (folders["albi"] / "survey.bin").write_bytes(survey)
        took = await _wait("survey", lambda: _same(folders, "survey.bin", survey, SITES))
        chunks = -(-len(survey) // CHUNK_BYTES)
        print(f"survey.bin ({len(survey)} bytes, {chunks} chunks) written at albi: everywhere after {took:.1f} s")

        print("power cut at nimes")
        scopes["nimes"].cancel()
        del nodes["nimes"], syncs["nimes"]
        up = [s for s in SITES if s != "nimes"]
        await _wait("nimes down", lambda: all(
            sum(m.status is meshcore.Status.ALIVE for m in nodes[s].members()) == len(up) for s in up))
        report2 = b"Attendance, week 49: 398 pupils.\n"
        (folders["toulouse"] / "notes" / "report.txt").write_bytes(report2)
        (folders["albi"] / "survey.bin").unlink()
        (folders["albi"] / "while-away.txt").write_bytes(b"written while nimes was dark\n")
        await _wait("the changes", lambda: _same(folders, "notes/report.txt", report2, up)
                    and _same(folders, "survey.bin", None, up)
                    and _same(folders, "while-away.txt", b"written while nimes was dark\n", up))
        print("while nimes was down: report.txt edited at toulouse, survey.bin deleted and while-away.txt "
              "written at albi")

        t0 = time.monotonic()
        nodes["nimes"] = await nursery.start(site, "nimes")
        await start_sync("nimes", nodes["nimes"], nursery)
        took = time.monotonic() - t0
        took += await _wait("nimes catching up", lambda: _same(folders, "notes/report.txt", report2, SITES)
                           and _same(folders, "survey.bin", None, SITES)
                           and _same(folders, "while-away.txt", b"written while nimes was dark\n", SITES))
        print(f"nimes back (same data and folder): caught up (edit, deletion, new file) {took:.1f} s after "
              "its restart")
        totals = sum((s.stats for s in syncs.values()), Counter())
        print("counters:", ", ".join(f"{k}={v}" for k, v in sorted(totals.items())))
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
