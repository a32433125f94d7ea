"""meshcore._native: when the compiled modules are used, and that the choice holds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import meshcore
import meshcore.runtime._kv
from meshcore._native import NATIVE_MODULES, PACKAGE, _source, _SourcesFirst, decide, sources


def fake_package(tmp_path: Path) -> Path:
    """A package tree holding a source for each compiled module, and a record that matches."""
    pkg = tmp_path / "meshcore"
    for module in NATIVE_MODULES:
        path = _source(module, pkg)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# {module}\n")
    (pkg / "other.py").write_text("X = 1\n")
    record = {"sources": sources(pkg), "cache_tag": sys.implementation.cache_tag}
    (pkg / "_native.sources").write_text(json.dumps(record))
    return pkg


def test_a_matching_record_means_compiled(tmp_path: Path) -> None:
    assert decide(fake_package(tmp_path), {}) == (True, "compiled")


@pytest.mark.parametrize("value", ["1", "yes"])
def test_meshcore_pure_turns_it_off(tmp_path: Path, value: str) -> None:
    use, why = decide(fake_package(tmp_path), {"MESHCORE_PURE": value})
    assert not use and "MESHCORE_PURE" in why
    assert decide(fake_package(tmp_path / "b"), {"MESHCORE_PURE": "0"})[0]


def test_any_changed_added_or_removed_source_makes_the_build_stale(tmp_path: Path) -> None:
    pkg = fake_package(tmp_path)
    (pkg / "other.py").write_text("X = 2\n")  # not a compiled module: its constants may be inlined
    use, why = decide(pkg, {})
    assert not use and "changed since the build: other.py" in why and "run make" in why
    pkg = fake_package(tmp_path / "b")
    (pkg / "new.py").write_text("")
    assert "new.py" in decide(pkg, {})[1]
    pkg = fake_package(tmp_path / "c")
    _source("meshcore.runtime._kv", pkg).unlink()
    assert "runtime/_kv.py" in decide(pkg, {})[1]


def test_a_missing_failed_foreign_or_damaged_record_means_pure(tmp_path: Path) -> None:
    pkg = fake_package(tmp_path)
    record = pkg / "_native.sources"
    record.unlink()
    assert decide(pkg, {}) == (False, "pure (not compiled)")
    (pkg / "runtime" / "_kv.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    assert "without _native.sources: run make" in decide(pkg, {})[1]
    record.write_text(json.dumps({"failed": "CompileError: no gcc"}))
    assert decide(pkg, {}) == (False, "pure (the build failed: CompileError: no gcc)")
    record.write_text(json.dumps({"sources": sources(pkg), "cache_tag": "cpython-399"}))
    assert "compiled for cpython-399" in decide(pkg, {})[1]
    for bad in ("{not json", "[1, 2]", json.dumps({"sources": 3, "cache_tag": sys.implementation.cache_tag})):
        record.write_text(bad)
        use, why = decide(pkg, {})
        assert not use and "run make" in why


def test_a_compiled_module_the_build_no_longer_lists_is_refused_and_bypassed(tmp_path: Path) -> None:
    pkg = fake_package(tmp_path)
    (pkg / "kv").mkdir(exist_ok=True)
    (pkg / "kv" / "_old.py").write_text("")
    record = {"sources": sources(pkg), "cache_tag": sys.implementation.cache_tag}
    (pkg / "_native.sources").write_text(json.dumps(record))
    assert decide(pkg, {})[0]
    (pkg / "kv" / "_old.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")  # an older build's
    (pkg / "_compiled__mypyc.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")  # this build's
    use, why = decide(pkg, {})
    assert not use and "outside this build: meshcore.kv._old; run make" in why
    finder = _SourcesFirst(pkg)
    spec = finder.find_spec("meshcore.kv._old", None)
    assert spec is not None and spec.origin == str(pkg / "kv" / "_old.py")
    assert finder.find_spec("meshcore.other", None) is None


def test_the_modules_in_use_are_the_ones_the_status_names() -> None:
    compiled = meshcore._native.status() == "compiled"
    assert meshcore._native.status() == decide(PACKAGE, os.environ)[1]
    suffix = Path(meshcore.runtime._kv.__file__ or "").suffix
    assert (suffix != ".py") == compiled, (meshcore._native.status(), meshcore.runtime._kv.__file__)


def test_meshcore_pure_reaches_the_agents_a_process_starts() -> None:
    code = "import meshcore, meshcore.cli._control as m; print(meshcore._native.status(), m.__file__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "MESHCORE_PURE": "1"}, cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("pure (MESHCORE_PURE is set)") and out.stdout.strip().endswith("_control.py")
