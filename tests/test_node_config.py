"""NodeConfig checks its fields and normalises addresses, tags and the advertised address."""

from __future__ import annotations

import nacl.signing
import pytest

from meshcore.errors import ConfigError, CredentialError
from meshcore.node import NodeConfig, parse_addr, resolve_signing_key
from meshcore.node._config import advertised_addr


def test_parse_addr_accepts_ipv4_ipv6_and_a_default_port() -> None:
    assert parse_addr("127.0.0.1:7946") == ("127.0.0.1", 7946)
    assert parse_addr("[::1]:80") == ("::1", 80)
    assert parse_addr("127.0.0.1", default_port=7946) == ("127.0.0.1", 7946)
    assert parse_addr("localhost:1")[1] == 1


@pytest.mark.parametrize("text", ["127.0.0.1", ":1", "h:port", "127.0.0.1:70000"])
def test_parse_addr_rejects_malformed_addresses_with_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_addr(text)


def test_seeds_and_tags_are_normalised() -> None:
    cfg = NodeConfig(seeds=["127.0.0.1:1", ("127.0.0.1", 2)], tags={"b": "2", "a": "1"}, insecure=True)
    assert cfg.seeds == (("127.0.0.1", 1), ("127.0.0.1", 2))
    assert cfg.meta().tags == (("a", "1"), ("b", "2"))


@pytest.mark.parametrize(
    "fields",
    [
        {"port": -1},
        {"profile": "turbo"},
        {"name": "x" * 100},
        {"roles": tuple(f"r{i}" for i in range(20))},
        {"seeds": [42]},
        {"events_buffer_max": 0},
        {"host": "0.0.0.0"},
        {"advertise": "0.0.0.0:1"},
        {"key": 12},
    ],
)
def test_a_bad_field_is_a_config_error(fields: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        cfg = NodeConfig(insecure=True, **fields)  # type: ignore[arg-type]
        resolve_signing_key(cfg.key)


def test_a_wildcard_bind_announces_the_advertised_host_with_the_bound_port() -> None:
    cfg = NodeConfig(host="0.0.0.0", advertise="192.0.2.7:0", insecure=True)
    assert advertised_addr(cfg, ("0.0.0.0", 4000)) == ("192.0.2.7", 4000)
    assert advertised_addr(NodeConfig(insecure=True), ("127.0.0.1", 5)) == ("127.0.0.1", 5)


def test_a_given_nacl_key_is_used_as_is_and_no_key_gives_a_fresh_one() -> None:
    key = nacl.signing.SigningKey.generate()
    assert resolve_signing_key(key) is key
    assert bytes(resolve_signing_key(None).verify_key) != bytes(resolve_signing_key(None).verify_key)


def test_a_node_without_credentials_is_refused_with_the_command_that_makes_them() -> None:
    with pytest.raises(CredentialError, match="meshcore keygen"):
        NodeConfig()
    with pytest.raises(CredentialError, match="meshcore authority sign"):
        NodeConfig(key="node.key")
    with pytest.raises(CredentialError, match="authority.pub"):
        NodeConfig(key="node.key", cert="node.cert")


def test_ws_seeds_are_recognised_and_kept_apart() -> None:
    cfg = NodeConfig(seeds=["ws://127.0.0.1:8080", "127.0.0.1:1"], insecure=True)
    assert cfg.seeds == (("127.0.0.1", 8080), ("127.0.0.1", 1))
    assert cfg.ws_seeds == (("127.0.0.1", 8080),)
    with pytest.raises(ConfigError, match="ws://"):
        NodeConfig(seeds=["wss://127.0.0.1:8080"], insecure=True)
