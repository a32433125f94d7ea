"""The compiled build of the request path's hot modules (mypyc), and its pure-Python fallback.

Every module works as plain Python. `python -m meshcore._native_build` (run by `make`)
compiles `NATIVE_MODULES` in place with mypyc: an extension module beside each source, and
one shared library (`meshcore/_compiled__mypyc*.so`). Those modules are the kv service, the
kv cores' coordinator and replica sides, the link framing and the control socket; compiled,
the agents spent x0.95-0.98 the CPU per quorum put and x0.89 per get at `one` (README,
Benchmarks). The build records, in `meshcore/_native.sources`, the hash of every source of
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
and turns a `bool` into an `int` or a `float` for a parameter typed so), so that a bad value
gets the same error compiled or not; classes and settings that users build or that check
what peers send (`KvServiceConfig`, `Watch`, records, stamps, messages, codecs) stay in
plain modules. Compiled classes take no attributes but their own, so tests cannot
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
    """The extension modules of a build lying in `package` (any interpreter's)."""
    found = list(package.glob("_compiled__mypyc*"))
    for module in NATIVE_MODULES:
        src = _source(module, package)
        found += [p for p in src.parent.glob(src.stem + ".*") if p.suffix in (".so", ".pyd")]
    return sorted(found)


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
    return True, "compiled"


class _SourcesFirst(importlib.abc.MetaPathFinder):
    """Loads the listed modules from their `.py` files, whatever else lies beside them."""

    def __init__(self, package: Path) -> None:
        self.package = package

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: object = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in NATIVE_MODULES:
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
