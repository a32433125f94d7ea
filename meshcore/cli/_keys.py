"""`meshcore keygen` and `meshcore authority init|sign|revoke|list`.

`register(subparsers)` adds the commands to the main CLI; each sets `func(args) -> int`.
Problems raise `CredentialError` / `ConfigError` (the CLI main prints one line, exit 2);
`main(argv)` runs these commands alone with the same convention.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, NoReturn

from .._types import NODE_ID_BYTES, NodeId
from ..errors import ConfigError, CredentialError
from ..security import (
    AuthorityDir,
    SigningKey,
    load_certificate,
    load_public_key,
    save_certificate,
    save_public_key,
    save_secret_key,
)

__all__ = ["register", "main"]

EXIT_USAGE = 2
_DAY_S = 86_400
_NOT_BEFORE_SLACK_S = 300  # certificates start a little in the past: clocks disagree


def _keygen(args: argparse.Namespace) -> int:
    key = SigningKey.generate()
    save_secret_key(key, args.out)
    save_public_key(key.public_key, f"{args.out}.pub")
    print(f"node id {key.node_id.hex()}  key {args.out} (mode 0600)  public {args.out}.pub")
    return 0


def _init(args: argparse.Namespace) -> int:
    d = AuthorityDir.init(args.dir, args.cluster)
    print(f"authority for cluster {args.cluster!r} created in {d.path}")
    print(f"give {d.public_path} to every node; keep {d.key_path} offline")
    return 0


def _roles(text: str) -> tuple[str, ...]:
    return tuple(r for r in (p.strip() for p in text.split(",")) if r)


def _sign(args: argparse.Namespace) -> int:
    d = AuthorityDir(args.dir)
    authority = d.authority()
    node_key = load_public_key(args.node_pub)
    if args.days <= 0:
        raise ConfigError(f"--days must be positive, got {args.days}")
    now = int(time.time())
    not_before = now - _NOT_BEFORE_SLACK_S
    try:
        cert = authority.issue(
            node_key, name=args.name, site=args.site, region=args.region,
            roles=_roles(args.roles), serial=d.next_serial(), not_before=not_before,
            not_after=now + int(args.days * _DAY_S),
        )
    except ValueError as exc:
        raise ConfigError(f"cannot issue the certificate: {exc}") from None
    save_certificate(cert, args.out)
    d.record_issued(cert)
    print(f"issued {cert.describe()} -> {args.out}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    d = AuthorityDir(args.dir)
    authority = d.authority()
    issued = d.issued()
    if args.cert:
        cert = load_certificate(args.cert)
        node, serial = cert.node_id, cert.serial
    elif args.node_id:
        try:
            node = NodeId(bytes.fromhex(args.node_id))
        except ValueError:
            node = NodeId(b"")
        if len(node) != NODE_ID_BYTES:
            raise ConfigError(f"--node-id must be {NODE_ID_BYTES * 2} hex digits")
        serial = max((c.serial for c in issued if c.node_id == node), default=0)
    else:
        match = [c for c in issued if c.serial == args.serial]
        if not match:
            raise ConfigError(f"no certificate with serial {args.serial} in {d.issued_path}")
        node, serial = match[0].node_id, args.serial
    if any(r.node == node for r in d.revocations.load()):
        raise ConfigError(f"node {node.hex()} is already revoked")
    rev = authority.revoke(node, serial=serial, revoked_at=int(time.time()))
    d.revocations.append(rev)
    print(f"revoked node {node.hex()} (serial {serial}); spread {d.revocations.path} to nodes")
    return 0


def _list(args: argparse.Namespace) -> int:
    d = AuthorityDir(args.dir)
    revoked = {r.node for r in d.revocations.load()}
    public = d.authority().public
    print(f"cluster {public.cluster}  authority key id {public.key_id.hex()}")
    for cert in d.issued():
        state = "REVOKED" if cert.node_id in revoked else "active"
        print(f"{state:<8} {cert.describe()} roles={','.join(cert.roles) or '-'}")
    return 0


def register(subparsers: Any) -> None:
    """Add `keygen` and `authority` to the main CLI's subparsers."""
    p = subparsers.add_parser("keygen", help="create a node key (Ed25519, file mode 0600)")
    p.add_argument("--out", required=True, metavar="PATH", help="secret key file; PATH.pub gets the public key")
    p.set_defaults(func=_keygen)

    auth = subparsers.add_parser("authority", help="the cluster authority: certify and revoke nodes")
    sub = auth.add_subparsers(dest="authority_command", metavar="ACTION", required=True)
    a = sub.add_parser("init", help="create an authority directory")
    a.add_argument("dir", metavar="DIR")
    a.add_argument("--cluster", required=True, help="cluster name (letters, digits, . _ -)")
    a.set_defaults(func=_init)

    s = sub.add_parser("sign", help="certify a node's public key")
    s.add_argument("dir", metavar="DIR")
    s.add_argument("--node-pub", required=True, metavar="PATH", help="the node's KEY.pub")
    s.add_argument("--name", required=True)
    s.add_argument("--site", required=True)
    s.add_argument("--region", required=True, help="territory the node's site is in")
    s.add_argument("--roles", default="", help="comma-separated roles")
    s.add_argument("--days", type=float, default=365.0, help="validity (default 365)")
    s.add_argument("--out", required=True, metavar="PATH", help="certificate file to write")
    s.set_defaults(func=_sign)

    r = sub.add_parser("revoke", help="revoke a node (every certificate of its key)")
    r.add_argument("dir", metavar="DIR")
    which = r.add_mutually_exclusive_group(required=True)
    which.add_argument("--cert", metavar="PATH")
    which.add_argument("--node-id", metavar="HEX")
    which.add_argument("--serial", type=int)
    r.set_defaults(func=_revoke)

    ls = sub.add_parser("list", help="list issued certificates and revocations")
    ls.add_argument("dir", metavar="DIR")
    ls.set_defaults(func=_list)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def main(argv: list[str]) -> int:
    """Run one keys/authority command; a problem is one line on stderr and exit 2."""
    parser = _Parser(prog="meshcore")
    register(parser.add_subparsers(dest="command", required=True, parser_class=_Parser))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        return int(args.func(args))
    except (ConfigError, CredentialError) as exc:
        print(f"meshcore {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
