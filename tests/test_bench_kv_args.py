"""The kv benchmark's argument checks and the reports' parameters (no processes started)."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import pytest

from benchmarks._report import emit
from benchmarks.kv import _check_python, _vs_code_phases
from meshcore.cli._launch import AgentProcess


def test_vs_code_phases_are_checked_by_name() -> None:
    assert _vs_code_phases(argparse.Namespace(vs_code_phases="put_quorum, get_one")) == ["put_quorum", "get_one"]
    with pytest.raises(SystemExit, match="unknown phase get_most"):
        _vs_code_phases(argparse.Namespace(vs_code_phases="put_quorum,get_most"))
    with pytest.raises(SystemExit, match="unknown phase"):
        _vs_code_phases(argparse.Namespace(vs_code_phases=" , "))


def test_vs_python_must_be_an_interpreter_with_the_dependencies(tmp_path: Path) -> None:
    _check_python(sys.executable)  # this one runs the suite: it has them
    not_python = tmp_path / "python"
    not_python.write_text("#!/bin/sh\nexit 1\n")
    not_python.chmod(0o755)
    for bad in (str(tmp_path / "missing"), str(not_python)):
        with pytest.raises(SystemExit, match="not a Python >= 3.11 with meshcore's dependencies"):
            _check_python(bad)


def test_an_agent_runs_with_the_interpreter_it_is_given(tmp_path: Path) -> None:
    assert AgentProcess("a", tmp_path)._argv[0] == sys.executable
    assert AgentProcess("a", tmp_path, python="/opt/py/bin/python")._argv[0] == "/opt/py/bin/python"


def test_every_report_records_the_interpreter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    emit("demo", {"n": 1}, {"x": 2.0}, str(tmp_path / "out.json"))
    doc = json.loads((tmp_path / "out.json").read_text())
    assert doc["params"] == {"n": 1, "python": f"{sys.executable} {platform.python_version()}"}
    assert f"python={sys.executable}" in capsys.readouterr().out
