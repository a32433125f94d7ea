"""The compiled build of the request path's hot modules (mypyc), and its pure-Python fallback.

Every module works as plain Python. `python -m meshcore._native_build` (run by `make`)
compiles `NATIVE_MODULES` in place with mypyc: an extension module beside each source, and
one shared library (`meshcore/_compiled__mypyc*.so`). Those modules are the kv service, the
kv cores' coordinator and replica sides, their records, stamps, clock and messages, the
record cache, the link framing and sealing, and the control socket (README, Benchmarks,
gives what it saves). The build records, in `meshcore/_native.sources`, the hash of every source of
the package (compiled code also depends on what it imports: mypyc may inline another
module's constants) and the interpreter it was made for.

`import meshcore` imports this module first. Its `activate()` keeps the compiled modules out
(an import hook loads their `.py` files instead) when
- `MESHCORE_PURE=1` is in the environment (to run or test the pure-Python path);
- a source changed since the build, or the record is missing, damaged or made for another
  interpreter: with a warning, run `make` to compile again;
- the record says the build failed (no C compiler, say).
`status()` says which path is in use; `python -m meshcore._native_build status` says what an
import would use, `... clean` removes the build.

What the compiled modules must keep: a parameter that takes a caller's value is typed
`object` and checked in the code (mypyc checks declared types itself, with a `TypeError`,
and turns a `bool` into an `int` or a `float` for a parameter or field typed so), so that a
bad value gets the same error compiled or not. Settings that users build (`KvServiceConfig`,
`KvConfig`, namespaces, `Watch`) and the membership codec stay in plain modules. Compiled
dataclasses that carry what peers send (kv messages, `Record`, `Stamp`) keep their typed
fields: their decoders check each field's type before constructing one (an id that is
`true` is refused, not read as 1), and `decode_envelope` turns a `TypeError` into a
`DecodeError`. Compiled classes take no attributes but their own, so tests cannot
monkeypatch their methods.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["NATIVE_MODULES", "activate", "status", "decide"]

NATIVE_MODULES: tuple[str, ...] = (
    "meshcore.kv._hlc",
    "meshcore.kv._record",
    "meshcore.kv._messages",
    "meshcore.runtime._recordcache",
    "meshcore.security._aead",
    "meshcore.kv._view",
    "meshcore.kv._placement",
    "meshcore.kv._replica",
    "meshcore.kv._coordinator",
    "meshcore.kv._core",
    "meshcore.security._framing",
    "meshcore.runtime._fastio",
    "meshcore.runtime._securelink",
    "meshcore.runtime._kv",
    "meshcore.cli._control",
    "meshcore.cli._kv",
)

PACKAGE = Path(__file__).resolve().parent
RECORD = PACKAGE / "_native.sources"
_status = "pure (not activated)"


def _source(module: str, package: Path = PACKAGE) -> Path:
    return package.joinpath(*module.split(".")[1:]).with_suffix(".py")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _built(package: Path = PACKAGE) -> list[Path]:
    """Every extension module lying in `package` (any build's, any interpreter's): the
    package ships none of its own, so each is a compiled module, perhaps of an older list."""
    return sorted(p for p in package.rglob("*") if p.suffix in (".so", ".pyd"))


def _module_of(path: Path, package: Path) -> str:
    """'meshcore.kv._record' for `kv/_record.cpython-311-x86_64-linux-gnu.so`."""
    parts = path.relative_to(package).parts
    return ".".join(("meshcore", *parts[:-1], parts[-1].split(".")[0]))


def _stray(package: Path = PACKAGE) -> list[str]:
    """Compiled modules beside a source that this build does not list (left by a build of
    an older `NATIVE_MODULES`): Python would import them in place of their `.py` files."""
    return sorted(m for m in (_module_of(p, package) for p in _built(package))
                  if m not in NATIVE_MODULES and not m.startswith("meshcore._compiled__mypyc"))


def sources(package: Path = PACKAGE) -> dict[str, str]:
    """Hash of every Python source of the package, by path: compiled code also depends on
    what it imports (mypyc may inline another module's constants), so a change anywhere
    makes the build stale."""
    return {p.relative_to(package).as_posix(): _digest(p) for p in sorted(package.rglob("*.py"))}


def decide(package: Path, environ: Mapping[str, str]) -> tuple[bool, str]:
    """(use the compiled modules?, why) for the build in `package`."""
    if environ.get("MESHCORE_PURE", "") not in ("", "0"):
        return False, "pure (MESHCORE_PURE is set)"
    record_path = package / RECORD.name
    try:
        record = json.loads(record_path.read_text())
    except FileNotFoundError:
        if _built(package):
            return False, f"pure (compiled modules without {record_path.name}: run make)"
        return False, "pure (not compiled)"
    except (OSError, ValueError) as exc:
        return False, f"pure ({record_path.name} unreadable: {exc}; run make)"
    if not isinstance(record, dict):
        return False, f"pure ({record_path.name} malformed; run make)"
    if "failed" in record:
        return False, f"pure (the build failed: {str(record['failed'])[:200]})"
    if record.get("cache_tag") != sys.implementation.cache_tag:
        return False, f"pure (compiled for {str(record.get('cache_tag'))[:40]}, not this interpreter; run make)"
    built = record.get("sources")
    if not isinstance(built, dict):
        return False, f"pure ({record_path.name} malformed; run make)"
    try:
        now = sources(package)
    except OSError as exc:
        return False, f"pure (sources unreadable: {exc})"
    changed = sorted(k for k in built.keys() | now.keys() if built.get(k) != now.get(k))
    if changed:
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        return False, f"pure (changed since the build: {', '.join(changed[:3])}{more}; run make)"
    stray = _stray(package)
    if stray:
        return False, f"pure (compiled modules outside this build: {', '.join(stray[:3])}; run make)"
    return True, "compiled"


class _SourcesFirst(importlib.abc.MetaPathFinder):
    """Loads the listed modules (and any stray compiled one) from their `.py` files,
    whatever else lies beside them."""

    def __init__(self, package: Path) -> None:
        self.package = package
        self.modules = frozenset(NATIVE_MODULES) | {m for m in _stray(package) if _source(m, package).is_file()}

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: object = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.modules:
            return None
        return importlib.util.spec_from_file_location(fullname, _source(fullname, self.package))


def activate() -> str:
    """Choose the compiled or the pure-Python modules, before any of them is imported."""
    global _status
    use, why = decide(PACKAGE, os.environ)
    if not use:
        if not any(isinstance(f, _SourcesFirst) for f in sys.meta_path):
            sys.meta_path.insert(0, _SourcesFirst(PACKAGE))
        if "run make" in why:
            warnings.warn(f"meshcore: running the {why}", RuntimeWarning, stacklevel=2)
    _status = why
    return why


def status() -> str:
    """'compiled', or 'pure (why)'."""
    return _status


activate()  # on import, which `meshcore/__init__.py` does before importing anything else
