"""`meshcore members`, `meshcore stats`, `meshcore leave`, `meshcore revoke FILE`: talk to a
running agent over its control socket (see `_control`).

`members --json` prints ``{"self", "checksum", "members": [...], "drops": {name: count}}``;
`revoke FILE` sends the signed revocations of FILE (the authority's `revocations` file, as
written by `meshcore authority revoke`) to the agent, which checks, applies and gossips them.
"""

from __future__ import annotations

import argparse
import json
import socket
from pathlib import Path
from typing import Any

from ._control import check_control_path, default_control_path, request_sync

__all__ = ["add_client_parsers", "control_path_from_args", "format_members", "run_client"]


def _add_target(p: argparse.ArgumentParser) -> None:
    p.add_argument("--control", metavar="PATH", help="the agent's control socket")
    p.add_argument("--name", help="the agent's node name (finds its default control socket)")
    p.add_argument("--timeout", type=float, default=5.0, metavar="S", help="seconds to wait (default 5)")


def add_client_parsers(subparsers: Any) -> None:
    p = subparsers.add_parser("members", help="list the members a running agent sees")
    _add_target(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p = subparsers.add_parser("stats", help="print a running agent's counters as JSON")
    _add_target(p)
    p = subparsers.add_parser("leave", help="ask a running agent to leave and exit")
    _add_target(p)
    p = subparsers.add_parser("revoke", help="inject signed revocations into a running agent")
    p.add_argument("file", metavar="FILE", help="revocations file (from `meshcore authority revoke`)")
    _add_target(p)


def control_path_from_args(args: argparse.Namespace) -> Path:
    path = Path(args.control) if args.control else default_control_path(args.name or socket.gethostname())
    check_control_path(path)
    return path


def format_members(answer: dict[str, Any]) -> str:
    rows = [("NAME", "ID", "ADDRESS", "STATUS", "INC", "SITE", "REGION", "ROLES")]
    for m in answer["members"]:
        me = "*" if m["id"] == answer.get("self") else ""
        rows.append(
            (
                (m["name"] or "-") + me,
                m["id"][:8],
                m["addr"],
                m["status"],
                str(m["incarnation"]),
                m["site"] or "-",
                m["region"] or "-",
                ",".join(m["roles"]) or "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def run_client(args: argparse.Namespace) -> int:
    path = control_path_from_args(args)
    if not 0 < args.timeout <= 600:
        from ..errors import ConfigError

        raise ConfigError("--timeout must be in (0, 600] seconds")
    fields: dict[str, Any] | None = None
    if args.command == "revoke":
        from ..security import RevocationStore

        revocations = RevocationStore(args.file).load()
        if not revocations:
            from ..errors import ConfigError

            raise ConfigError(f"{args.file}: no revocation in it (or no such file)")
        fields = {"revocations": [r.encode().hex() for r in revocations]}
    answer = request_sync(path, args.command, timeout_s=args.timeout, fields=fields)
    if args.command == "revoke":
        revoked = answer.get("revoked", [])
        print(f"{len(revoked)} node(s) newly revoked" + "".join(f"\n  {n}" for n in revoked))
        return 0
    if args.command == "members":
        if args.json:
            keys = ("self", "checksum", "members", "drops")
            print(json.dumps({k: answer.get(k) for k in keys}, indent=2))
        else:
            print(format_members(answer))
    elif args.command == "stats":
        print(json.dumps(answer["stats"], indent=2, sort_keys=True))
    else:
        print("the agent is leaving")
    return 0
