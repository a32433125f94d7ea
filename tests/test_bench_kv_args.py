"""The kv benchmark's argument checks (no processes started)."""

from __future__ import annotations

import argparse

import pytest

from benchmarks.kv import _vs_code_phases


def test_vs_code_phases_are_checked_by_name() -> None:
    assert _vs_code_phases(argparse.Namespace(vs_code_phases="put_quorum, get_one")) == ["put_quorum", "get_one"]
    with pytest.raises(SystemExit, match="unknown phase get_most"):
        _vs_code_phases(argparse.Namespace(vs_code_phases="put_quorum,get_most"))
    with pytest.raises(SystemExit, match="unknown phase"):
        _vs_code_phases(argparse.Namespace(vs_code_phases=" , "))
