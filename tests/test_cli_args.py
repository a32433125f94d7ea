"""Bad command lines and config files give one line on stderr and exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshcore.cli.__main__ import main


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse exits for usage errors
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["agent", "--bogus"],
        ["agent", "--bind", "127.0.0.1:"],
        ["agent", "--bind", "0.0.0.0:0"],
        ["agent", "--bind", "nonexistent.invalid:1"],
        ["agent", "--bind", "127.0.0.1:99999"],
        ["agent", "--bind", "127.0.0.1:abc"],
        ["agent", "--join", ":7946"],
        ["agent", "--profile", "turbo"],
        ["agent", "--tag", "novalue"],
        ["agent", "--tag", "a=1", "--tag", "a=2"],
        ["agent", "--name", "x" * 65],
        ["agent", "--log-level", "loud"],
        ["agent", "--kv-cache-mb", "-1"],
        ["agent", "--kv-cache-mb", "lots"],
        ["agent", "--control", "/tmp/" + "c" * 200 + ".sock"],
        ["agent", "--config", "/nonexistent/meshcore.toml"],
        ["agent", "--key", "/nonexistent/node.key"],
        ["members", "--timeout", "-1", "--control", "/tmp/x.sock"],
        ["frobnicate"],
    ],
)
def test_a_bad_argument_is_one_line_on_stderr_and_exit_code_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _run(argv, capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "error" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "text",
    [
        "bind = ",  # not TOML
        "bind = 7946",  # wrong type
        "colour = 'blue'",  # unknown key
        "join = [1, 2]",  # list of non-strings
        "tags = { a = 1 }",  # tag value not a string
        "profile = 'nope'",
        "kv_port = true",  # a bool is not a port
        "kv_sync = 'sometimes'",
        "kv_sync = 1",
        "kv_cache_mb = -1",
        "kv_cache_mb = 70000",
        "kv_cache_mb = '8'",
        "\xff\xfe",  # not UTF-8 once written as latin-1 bytes
    ],
)
def test_a_bad_config_file_is_one_line_on_stderr_and_exit_code_2(
    text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agent.toml"
    path.write_bytes(text.encode("latin-1"))
    code, err = _run(["agent", "--config", str(path)], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert str(path) in err


def test_members_without_a_running_agent_says_so_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _run(["members", "--control", str(tmp_path / "none.sock")], capsys)
    assert code == 1
    assert "is the agent running" in err
