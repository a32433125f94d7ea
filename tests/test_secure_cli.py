"""The agent is secure by default: missing, expired or foreign credentials are one line
naming the file and the fix, exit 2, before anything binds."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from meshcore.cli.__main__ import main
from meshcore.node.testing import SecureCluster
from meshcore.security import make_throwaway_cluster


def _agent(tmp_path: Path, *extra: str) -> list[str]:
    return ["agent", "--name", "a", "--bind", "127.0.0.1:0", "--control", str(tmp_path / "a.sock"), *extra]


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_the_agent_refuses_to_start_without_a_key_and_names_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_agent(tmp_path)) == 2
    assert "meshcore keygen" in _error_line(capsys)


def test_the_agent_refuses_a_missing_certificate_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    SecureCluster(["a"], directory=tmp_path)
    assert main(_agent(tmp_path, "--key", str(tmp_path / "a.key"))) == 2
    assert "meshcore authority sign" in _error_line(capsys)
    missing = tmp_path / "nope.cert"
    args = _agent(tmp_path, "--key", str(tmp_path / "a.key"), "--cert", str(missing),
                  "--authority", str(tmp_path / "authority.pub"))
    assert main(args) == 2
    assert str(missing) in _error_line(capsys)


def test_an_expired_certificate_is_refused_with_the_file_and_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_throwaway_cluster(["a"], now=time.time() - 40 * 86_400, days=1, directory=tmp_path)
    args = _agent(tmp_path, "--key", str(tmp_path / "a.key"), "--cert", str(tmp_path / "a.cert"),
                  "--authority", str(tmp_path / "authority.pub"))
    assert main(args) == 2
    line = _error_line(capsys)
    assert str(tmp_path / "a.cert") in line and "expired" in line and "authority sign" in line


def test_a_certificate_from_another_authority_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    SecureCluster(["a"], directory=tmp_path / "ours")
    SecureCluster(["other"], directory=tmp_path / "theirs")
    args = _agent(tmp_path, "--key", str(tmp_path / "ours" / "a.key"),
                  "--cert", str(tmp_path / "ours" / "a.cert"),
                  "--authority", str(tmp_path / "theirs" / "authority.pub"))
    assert main(args) == 2
    line = _error_line(capsys)
    assert "a.cert" in line and "trusted authority" in line


def test_revoke_refuses_a_file_without_revocations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "revs").write_text("")
    assert main(["revoke", str(tmp_path / "revs"), "--control", str(tmp_path / "x.sock")]) == 2
    assert "no revocation" in _error_line(capsys)
