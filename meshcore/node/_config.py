"""`NodeConfig`: everything a node needs to start, checked when it is built.

A bad value raises `ConfigError` naming the field and the fix, so the CLI can print it on
one line.

Secure by default: a node needs credentials, either `credentials=` (a loaded
`meshcore.security.Credentials`, e.g. from `make_throwaway_cluster` in tests and the demo)
or the files `key` (written by `meshcore keygen`), `cert` (by `meshcore authority sign`)
and `authorities` (the cluster's `authority.pub`, two during a key rollover), plus an
optional `revocations` store. A missing one is a `CredentialError` that names it and the
command that makes it. `insecure=True` runs without any of this (plain datagrams and
streams, a throwaway key unless `key` is given); it is for local experiments only, is never
the default, and the node logs a warning when it starts that way.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nacl.signing

from .._types import Addr
from ..errors import ConfigError, CredentialError
from ..wire import NodeMeta

__all__ = [
    "NodeConfig",
    "PROFILES",
    "parse_addr",
    "parse_seed",
    "resolve_signing_key",
    "advertised_addr",
]

PROFILES = ("lan", "wan", "local", "memberlist", "swim")
SEEDS_MAX = 64
AUTHORITIES_MAX = 2
EVENTS_BUFFER_MAX = 1_000_000


def parse_addr(text: str, *, what: str = "address", default_port: int | None = None) -> Addr:
    """Parse `HOST:PORT` (`[v6]:PORT` for IPv6) into a numeric address.

    Host names are resolved here, once; the runtime only ever sees numeric addresses.
    """
    text = text.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        if default_port is None:
            raise ConfigError(f"{what} {text!r} must be HOST:PORT, e.g. 127.0.0.1:7946")
        host, port_text = text, str(default_port)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise ConfigError(f"{what} {text!r} has no host; write HOST:PORT, e.g. 127.0.0.1:7946")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"{what} {text!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{what} {text!r}: port {port} is out of range 0..65535")
    return (_numeric_host(host, what=what, text=text), port)


def parse_seed(text: str, *, default_port: int | None = None) -> tuple[Addr, bool]:
    """A seed `HOST:PORT` or `ws://HOST:PORT` -> (numeric address, over WebSocket?)."""
    if text.strip().startswith(("ws://", "wss://")):
        from ..runtime._ws import parse_ws_url

        host, port = parse_ws_url(text)
        return (_numeric_host(host, what="seed", text=text), port), True
    return parse_addr(text, what="seed", default_port=default_port), False


def _numeric_host(host: str, *, what: str, text: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    import socket

    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    except (OSError, UnicodeError):
        raise ConfigError(f"{what} {text!r}: cannot resolve host {host!r}") from None
    for family, *_rest, sockaddr in infos:
        if family == socket.AF_INET:
            return str(sockaddr[0])
    return str(infos[0][4][0])


def resolve_signing_key(key: Any) -> nacl.signing.SigningKey:
    """Turn the configured key (or None) into a nacl `SigningKey`; raises
    `CredentialError` naming the file for a bad key file."""
    if key is None:
        return nacl.signing.SigningKey.generate()
    if isinstance(key, nacl.signing.SigningKey):
        return key
    seed = getattr(key, "seed", None)
    if isinstance(seed, bytes) and len(seed) == 32:
        return nacl.signing.SigningKey(seed)
    if isinstance(key, str | os.PathLike):
        try:
            from ..security._keys import load_secret_key
        except ImportError:  # pragma: no cover - the security package ships with meshcore
            raise CredentialError(f"{key}: key files need meshcore.security") from None
        return nacl.signing.SigningKey(load_secret_key(key).seed)
    raise ConfigError(
        f"key must be a nacl SigningKey, a meshcore SigningKey or a key file path, "
        f"got {type(key).__name__}"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    """How to run one node. `port=0` binds an ephemeral port (UDP and TCP share it)."""

    host: str = "127.0.0.1"
    port: int = 0
    seeds: tuple[Addr, ...] = ()
    #: The address peers should use ("HOST:PORT" or (host, port)); needed when binding a
    #: wildcard host such as 0.0.0.0. Port 0 here means "the bound port".
    advertise: Addr | str | None = None
    name: str = ""
    site: str = ""
    region: str = ""
    roles: tuple[str, ...] = ()
    #: A mapping, or (key, value) pairs; stored as sorted pairs.
    tags: tuple[tuple[str, str], ...] | Mapping[str, str] = ()
    profile: str = "lan"
    #: Overrides of the profile's `SwimConfig` fields, e.g. {"probe_interval_s": 0.5}.
    swim_overrides: Mapping[str, Any] = field(default_factory=dict)
    key: Any = None
    rng_seed: int | None = None
    #: Events kept per subscriber before the oldest are dropped (and counted).
    events_buffer_max: int = 1024
    #: How long `leave()` keeps gossiping the leave before it returns; None: from the profile.
    leave_linger_s: float | None = None
    #: Loaded credentials (a `meshcore.security.Credentials`); or give the files below.
    credentials: Any = None
    cert: str | os.PathLike[str] | None = None
    authorities: tuple[str | os.PathLike[str], ...] = ()
    revocations: str | os.PathLike[str] | None = None
    #: Plain datagrams and streams, no admission: local experiments only, never the default.
    insecure: bool = False
    #: Also accept streams over WebSocket here ("HOST:PORT"; port 0: any).
    ws_bind: Addr | str | None = None
    #: Seeds reached over WebSocket (filled from `ws://` entries of `seeds`).
    ws_seeds: tuple[Addr, ...] = ()
    # --- key-value layer (meshcore.node._kv) ---
    #: Directory of the node's store; None: the kv layer is disabled.
    data_dir: str | os.PathLike[str] | None = None
    #: TCP port of the kv service; None: the SWIM port + 1 (any port if that is 0); 0: any.
    kv_port: int | None = None
    #: A `meshcore.runtime._kv.KvServiceConfig` (timeouts, limits); None: the defaults.
    kv: Any = None

    def __post_init__(self) -> None:
        if type(self.host) is not str or not self.host:
            raise ConfigError("host must be a non-empty string such as 127.0.0.1")
        object.__setattr__(self, "host", _numeric_host(self.host, what="bind host", text=self.host))
        if type(self.port) is not int or not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be an int in 0..65535 (0: ephemeral), got {self.port!r}")
        if isinstance(self.advertise, str):
            object.__setattr__(self, "advertise", parse_addr(self.advertise, what="advertise"))
        elif self.advertise is not None:
            adv = self.advertise
            if not (isinstance(adv, tuple) and len(adv) == 2 and isinstance(adv[0], str) and type(adv[1]) is int):
                raise ConfigError(f"advertise {adv!r:.60} must be 'HOST:PORT' or (host, port)")
            object.__setattr__(self, "advertise", parse_addr(f"{adv[0]}:{adv[1]}", what="advertise"))
        if ipaddress.ip_address(self.host).is_unspecified and self.advertise is None:
            raise ConfigError(
                f"binding {self.host} needs an address for peers to reach this node: "
                "give advertise (--advertise HOST:PORT)"
            )
        if self.advertise is not None and ipaddress.ip_address(self.advertise[0]).is_unspecified:
            raise ConfigError("advertise must be a specific address, not a wildcard")
        seeds = tuple(self.seeds)
        if len(seeds) > SEEDS_MAX:
            raise ConfigError(f"at most {SEEDS_MAX} seeds, got {len(seeds)}")
        clean: list[Addr] = []
        ws_seeds = list(self.ws_seeds)
        for s in seeds:
            if isinstance(s, str):
                addr, over_ws = parse_seed(s)
                clean.append(addr)
                if over_ws:
                    ws_seeds.append(addr)
            elif (
                isinstance(s, Sequence)
                and len(s) == 2
                and isinstance(s[0], str)
                and type(s[1]) is int
            ):
                clean.append(parse_addr(f"{s[0]}:{s[1]}", what="seed"))
            else:
                raise ConfigError(f"seed {s!r:.60} must be 'HOST:PORT' or (host, port)")
        object.__setattr__(self, "seeds", tuple(clean))
        object.__setattr__(self, "ws_seeds", tuple(dict.fromkeys(ws_seeds)))
        if isinstance(self.ws_bind, str):
            object.__setattr__(self, "ws_bind", parse_addr(self.ws_bind, what="ws_bind"))
        elif self.ws_bind is not None and not (
            isinstance(self.ws_bind, tuple) and len(self.ws_bind) == 2 and type(self.ws_bind[1]) is int
        ):
            raise ConfigError(f"ws_bind {self.ws_bind!r:.60} must be 'HOST:PORT' or (host, port)")
        tags = self.tags.items() if isinstance(self.tags, Mapping) else self.tags
        try:
            object.__setattr__(self, "tags", tuple(sorted(tuple(t) for t in tags)))
        except TypeError:
            raise ConfigError("tags must be a mapping or (key, value) pairs of strings") from None
        object.__setattr__(self, "roles", tuple(self.roles))
        self.meta()  # validates name/site/region/roles/tags with the wire limits
        if self.profile not in PROFILES:
            raise ConfigError(f"profile {self.profile!r} is unknown; choose one of {', '.join(PROFILES)}")
        if not isinstance(self.swim_overrides, Mapping):
            raise ConfigError("swim_overrides must be a mapping of SwimConfig field -> value")
        if self.rng_seed is not None and type(self.rng_seed) is not int:
            raise ConfigError(f"rng_seed must be an int or None, got {self.rng_seed!r}")
        if type(self.events_buffer_max) is not int or not 1 <= self.events_buffer_max <= EVENTS_BUFFER_MAX:
            raise ConfigError(f"events_buffer_max must be an int in 1..{EVENTS_BUFFER_MAX}")
        if self.leave_linger_s is not None and not (
            isinstance(self.leave_linger_s, int | float) and 0 <= self.leave_linger_s <= 600
        ):
            raise ConfigError("leave_linger_s must be a number of seconds in 0..600, or None")
        if isinstance(self.key, str | Path) and not str(self.key):
            raise ConfigError("key path is empty; give the path of a key file or no key")
        if type(self.insecure) is not bool:
            raise ConfigError("insecure must be True or False")
        # kv layer settings (meshcore.node._kv)
        if self.kv_port is not None and (type(self.kv_port) is not int or not 0 <= self.kv_port <= 65535):
            raise ConfigError(f"kv_port must be a port number 0..65535 or None, got {self.kv_port!r:.40}")
        if self.data_dir is not None and not str(self.data_dir):
            raise ConfigError("data_dir is empty; give a directory path or None")
        object.__setattr__(self, "authorities", tuple(self.authorities))
        if len(self.authorities) > AUTHORITIES_MAX:
            raise ConfigError(f"trust at most {AUTHORITIES_MAX} authorities (old and new during a rollover)")
        if not self.insecure:
            self._check_credentials_given()

    def _check_credentials_given(self) -> None:
        if self.credentials is not None:
            from ..security import Credentials

            if not isinstance(self.credentials, Credentials):
                raise ConfigError("credentials must be a meshcore.security.Credentials")
            return
        if self.key is None:
            raise CredentialError(
                "no node key configured: create one with `meshcore keygen --out node.key` "
                "and pass --key node.key (or run --insecure for a local experiment)"
            )
        if self.cert is None:
            key_hint = f"{self.key}.pub" if isinstance(self.key, str | os.PathLike) else "node.key.pub"
            raise CredentialError(
                "no node certificate configured: have the operator run `meshcore authority "
                f"sign DIR --node-pub {key_hint} --name NAME --site SITE --region REGION "
                "--out node.cert` and pass --cert node.cert"
            )
        if not self.authorities:
            raise CredentialError(
                "no trusted authority configured: pass --authority authority.pub (the "
                "cluster's public authority file from `meshcore authority init`)"
            )

    def load_credentials(self, now: float) -> Any:
        """The node's `Credentials` (loading and checking the files at `now`), or None
        when running insecure. Raises `CredentialError` naming the file and the fix."""
        if self.insecure:
            return None
        if self.credentials is not None:
            return self.credentials
        from ..security import load_credentials

        if not isinstance(self.key, str | os.PathLike):
            raise CredentialError(
                "with certificate files, key must be the path of the key file they certify"
            )
        assert self.cert is not None
        return load_credentials(
            self.key, self.cert, self.authorities, now=now, revocations_path=self.revocations
        )

    def meta(self) -> NodeMeta:
        try:
            return NodeMeta(
                name=self.name,
                site=self.site,
                region=self.region,
                roles=tuple(self.roles),
                tags=tuple(self.tags),  # type: ignore[arg-type]  # normalised in __post_init__
            )
        except ValueError as exc:
            raise ConfigError(f"node metadata: {exc}") from None


def advertised_addr(config: NodeConfig, bound: Addr) -> Addr:
    """The address the node announces: `advertise` (its port 0 meaning the bound port),
    else the bound address."""
    adv = config.advertise
    if adv is None:
        return bound
    assert isinstance(adv, tuple)
    return (adv[0], adv[1] or bound[1])
