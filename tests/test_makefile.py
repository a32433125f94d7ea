"""The Makefile's choice of interpreter for the venv, read with `make -n` (nothing is run)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make")


def make(*args: str, cwd: Path = ROOT) -> str:
    out = subprocess.run(["make", "-s", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_the_system_python_is_chosen_when_it_is_3_11_or_newer_with_ensurepip() -> None:
    system = Path("/usr/bin/python3")
    ok = system.exists() and subprocess.run(
        [str(system), "-c", "import sys, ensurepip; sys.exit(sys.version_info < (3, 11))"],
        capture_output=True).returncode == 0
    chosen = make("--eval", "show: ; @echo $(PYTHON)", "show").strip()
    assert chosen == ("/usr/bin/python3" if ok else "python3")
    assert make("--eval", "show: ; @echo $(PYTHON)", "show", "PYTHON=/opt/py/bin/python3").strip() == "/opt/py/bin/python3"


def test_a_venv_made_from_another_interpreter_is_emptied_and_one_of_the_same_kept(tmp_path: Path) -> None:
    shutil.copy(ROOT / "Makefile", tmp_path)
    (tmp_path / "meshcore").mkdir()
    venv = tmp_path / ".venv"
    venv.mkdir()
    (venv / "kept").touch()
    (venv / ".base").write_text("/usr/bin/python3\n")
    make(".venv/.base", "PYTHON=/usr/bin/python3", cwd=tmp_path)  # the record of the choice only
    assert (venv / "kept").exists()
    make(".venv/.base", "PYTHON=/opt/other/python3", cwd=tmp_path)
    assert not (venv / "kept").exists() and (venv / ".base").read_text() == "/opt/other/python3\n"
    (venv / ".base").unlink()  # a venv from before the record: made again too
    (venv / "kept").touch()
    make(".venv/.base", "PYTHON=/opt/other/python3", cwd=tmp_path)
    assert not (venv / "kept").exists()
