"""The `meshcore` command: `agent`, `members`, `stats`, `leave`, `revoke` (and `keygen`,
`authority` when meshcore.cli._keys is present).

Every argument and file is untrusted input: a problem is one line on stderr and exit code 2,
never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import NoReturn

import trio

from ..errors import ConfigError, CredentialError, MeshError
from ._agent import add_agent_parser, agent_settings, run_agent
from ._control import ControlError
from ._members import add_client_parsers, run_client

__all__ = ["main", "build_parser"]

EXIT_USAGE = 2
EXIT_UNREACHABLE = 1


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (plus exit 2) instead of a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="meshcore", description="meshcore node binary")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    add_agent_parser(sub)
    add_client_parsers(sub)
    try:
        from . import _keys
    except ImportError:
        pass
    else:
        _keys.register(sub)
    from . import _kv  # `kv` and `namespace` (also registers their control ops)

    _kv.register(sub)
    return parser


def _fail(prog: str, message: str, code: int) -> int:
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    print(f"{prog}: error: {first}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    prog = f"meshcore {args.command}"
    try:
        if args.command == "agent":
            config, control, level = agent_settings(args)
            logging.basicConfig(
                level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
            )
            trio.run(run_agent, config, control)
            return 0
        if args.command in ("members", "stats", "leave", "revoke"):
            return run_client(args)
        handler = getattr(args, "func", None)
        if handler is None:
            return _fail(prog, f"no handler for {args.command!r}", EXIT_USAGE)
        return int(handler(args) or 0)
    except (ConfigError, CredentialError) as exc:
        return _fail(prog, str(exc), EXIT_USAGE)
    except ControlError as exc:
        return _fail(prog, str(exc), EXIT_UNREACHABLE)
    except MeshError as exc:
        return _fail(prog, str(exc), EXIT_USAGE)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
