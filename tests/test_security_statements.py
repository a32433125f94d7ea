"""Self-signed Alive / leave statements."""

from __future__ import annotations

from meshcore.security import make_throwaway_cluster
from meshcore.wire import Alive, Dead, NodeMeta, alive_signing_bytes, dead_signing_bytes

NOW = 1_700_000_000.0


def _alive(node: bytes, incarnation: int = 1) -> Alive:
    meta = NodeMeta(name="a", site="s", region="r")
    return Alive(node=node, incarnation=incarnation, addr=("10.0.0.1", 7946), meta=meta)


def test_a_signed_alive_verifies_and_a_forged_one_does_not() -> None:
    cluster = make_throwaway_cluster(["a", "b"], now=NOW)
    a, b = cluster.nodes
    verifier = b.statement_verifier()
    verifier.add_certificate(a.certificate)
    message = alive_signing_bytes(_alive(a.key.node_id))
    sig = a.statement_signer()(message)
    assert verifier(a.key.node_id, message, sig)
    assert not verifier(a.key.node_id, alive_signing_bytes(_alive(a.key.node_id, 2)), sig)
    forged = b.statement_signer()(message)  # b tries to speak for a
    assert not verifier(a.key.node_id, message, forged)
    assert verifier.counters["statement_bad_signature"] == 2


def test_a_repeated_statement_is_answered_from_the_cache() -> None:
    cluster = make_throwaway_cluster(["a", "b"], now=NOW)
    a, b = cluster.nodes
    verifier = b.statement_verifier()
    verifier.add_certificate(a.certificate)
    leave = Dead(node=a.key.node_id, incarnation=3, by=a.key.node_id)
    message = dead_signing_bytes(leave)
    sig = a.statement_signer()(message)
    assert verifier(a.key.node_id, message, sig)
    verifier._keys[a.key.node_id] = bytes(32)  # were the signature checked again, it would fail
    assert verifier(a.key.node_id, message, sig)


def test_statements_of_unknown_or_revoked_nodes_are_refused() -> None:
    cluster = make_throwaway_cluster(["a", "b"], now=NOW)
    a, b = cluster.nodes
    verifier = b.statement_verifier()
    message = alive_signing_bytes(_alive(a.key.node_id))
    sig = a.statement_signer()(message)
    assert not verifier(a.key.node_id, message, sig)
    verifier.add_certificate(a.certificate)
    b.trust.add_revocation(cluster.authority.revoke(a.key.node_id, serial=1, revoked_at=int(NOW)))
    assert not verifier(a.key.node_id, message, sig)
    assert verifier.counters["statement_unknown_node"] == 1 and verifier.counters["cert_revoked"] == 1
