"""The identity-bound handshake: admission rules and their errors."""

from __future__ import annotations

import cbor2
import pytest

from meshcore.errors import SecurityError
from meshcore.security import (
    CertificateError,
    Credentials,
    HandshakeError,
    IdentityHandshake,
    LinkSecurity,
    SigningKey,
    TrustStore,
    handshake_pair,
    make_throwaway_cluster,
)
from meshcore.security._handshake import binding_bytes

NOW = 1_700_000_000.0


@pytest.fixture
def cluster():
    return make_throwaway_cluster(["a", "b"], now=NOW)


def _sec(creds: Credentials) -> LinkSecurity:
    return creds.link_security()


def _with_cert(creds: Credentials, cluster, **fields) -> Credentials:
    base = dict(
        name="b", site="b", region="test", serial=99, not_before=int(NOW) - 60,
        not_after=int(NOW) + 3600,
    )
    base.update(fields)
    cert = cluster.authority.issue(creds.key.public_key, **base)
    return Credentials(creds.key, cert, creds.trust)


@pytest.mark.parametrize("pattern", ["XX", "IK"])
def test_two_certified_nodes_complete_a_handshake_and_learn_each_other(cluster, pattern) -> None:
    a, b = cluster.nodes
    ra, rb = handshake_pair(_sec(a), _sec(b), now=NOW, pattern=pattern)
    assert ra.peer == b.certificate and rb.peer == a.certificate
    assert ra.handshake_hash == rb.handshake_hash
    assert rb.receive.decrypt_with_ad(None, ra.send.encrypt_with_ad(None, b"hello")) == b"hello"
    assert ra.receive.decrypt_with_ad(None, rb.send.encrypt_with_ad(None, b"back")) == b"back"


def test_a_peer_certified_by_another_authority_is_refused(cluster) -> None:
    other = make_throwaway_cluster(["mallory"], now=NOW)
    with pytest.raises(CertificateError) as info:
        handshake_pair(_sec(other.nodes[0]), _sec(cluster.nodes[1]), now=NOW)
    assert info.value.reason in ("cert_untrusted", "cert_wrong_cluster")


def test_a_peer_of_a_cluster_with_another_name_fails_at_the_first_mac(cluster) -> None:
    other = make_throwaway_cluster(["mallory"], now=NOW, cluster="other")
    with pytest.raises(HandshakeError) as info:
        handshake_pair(_sec(other.nodes[0]), _sec(cluster.nodes[1]), now=NOW)
    assert info.value.reason == "bad_mac"


def test_an_expired_certificate_is_refused(cluster) -> None:
    b = _with_cert(cluster.nodes[1], cluster, not_before=int(NOW) - 7200, not_after=int(NOW) - 3600)
    with pytest.raises(CertificateError) as info:
        handshake_pair(_sec(cluster.nodes[0]), _sec(b), now=NOW)
    assert info.value.reason == "cert_expired"
    assert "expired" in str(info.value)


def test_a_not_yet_valid_certificate_is_refused(cluster) -> None:
    b = _with_cert(cluster.nodes[1], cluster, not_before=int(NOW) + 3600, not_after=int(NOW) + 7200)
    with pytest.raises(CertificateError) as info:
        handshake_pair(_sec(b), _sec(cluster.nodes[0]), now=NOW)
    assert info.value.reason == "cert_not_yet_valid"


def test_a_revoked_node_is_refused(cluster) -> None:
    a, b = cluster.nodes
    revocation = cluster.authority.revoke(b.key.node_id, serial=b.certificate.serial, revoked_at=int(NOW))
    assert a.trust.add_revocation(revocation.encode()) is True
    with pytest.raises(CertificateError) as info:
        handshake_pair(_sec(b), _sec(a), now=NOW)
    assert info.value.reason == "cert_revoked"


def test_a_revocation_not_signed_by_the_authority_is_refused(cluster) -> None:
    a, b = cluster.nodes
    other = make_throwaway_cluster([], now=NOW)  # same cluster name, other key
    with pytest.raises(CertificateError):
        a.trust.add_revocation(other.authority.revoke(b.key.node_id, serial=1, revoked_at=int(NOW)))
    assert not a.trust.is_revoked(b.key.node_id)


def test_a_tampered_certificate_is_refused(cluster) -> None:
    a, b = cluster.nodes
    evil = _sec(b)
    cert_bytes, sig = cbor2.loads(evil.payload)
    tbs, cert_sig = cbor2.loads(cert_bytes)
    fields = cbor2.loads(tbs)
    fields[5] = "elsewhere"  # claims another region, keeps the authority's signature
    tampered = cbor2.dumps([cbor2.dumps(fields), cert_sig])
    evil._payload = cbor2.dumps([tampered, sig])
    with pytest.raises(CertificateError) as info:
        handshake_pair(evil, _sec(a), now=NOW)
    assert info.value.reason == "cert_untrusted"


def test_a_signature_that_does_not_bind_the_static_key_is_refused(cluster) -> None:
    a, b = cluster.nodes
    evil = _sec(b)
    cert_bytes, _ = cbor2.loads(evil.payload)
    wrong = b.key.sign(binding_bytes(SigningKey.generate().x25519_public))
    evil._payload = cbor2.dumps([cert_bytes, wrong])
    with pytest.raises(HandshakeError) as info:
        handshake_pair(evil, _sec(a), now=NOW)
    assert info.value.reason == "binding_invalid"


def test_a_stolen_certificate_with_another_static_key_is_refused(cluster) -> None:
    a, b = cluster.nodes
    thief_key = SigningKey.generate()
    thief = LinkSecurity(b.key, b.certificate, b.trust)
    thief.static = (thief_key.x25519_secret, thief_key.x25519_public)  # cert of b, key of thief
    with pytest.raises(HandshakeError) as info:
        handshake_pair(thief, _sec(a), now=NOW)
    assert info.value.reason == "binding_invalid"


def test_an_initiator_expecting_another_node_aborts(cluster) -> None:
    a, b = cluster.nodes
    c = cluster.issue("c", now=NOW)
    i = IdentityHandshake(_sec(a), initiator=True, now=NOW, expected_node=c.key.node_id)
    r = IdentityHandshake(_sec(b), initiator=False, now=NOW)
    r.read_message(i.write_message(NOW), NOW)
    with pytest.raises(HandshakeError) as info:
        i.read_message(r.write_message(NOW), NOW)
    assert info.value.reason == "peer_mismatch"


def test_ik_to_a_node_whose_key_changed_fails_and_xx_then_succeeds(cluster) -> None:
    a, b = cluster.nodes
    stale = cluster.issue("b", now=NOW)  # a's idea of b: another key than b has now
    i = IdentityHandshake(_sec(a), initiator=True, now=NOW, pattern="IK", peer_certificate=stale.certificate)
    r = IdentityHandshake(_sec(b), initiator=False, now=NOW, pattern="IK")
    with pytest.raises(SecurityError):
        r.read_message(i.write_message(NOW), NOW)
    ra, _ = handshake_pair(_sec(a), _sec(b), now=NOW)
    assert ra.peer == b.certificate


def test_at_most_two_authorities_are_trusted_at_once(cluster) -> None:
    from meshcore.errors import ConfigError

    others = [make_throwaway_cluster([], now=NOW).authority.public for _ in range(2)]
    TrustStore([cluster.authority.public, others[0]])
    with pytest.raises(ConfigError, match="rollover"):
        TrustStore([cluster.authority.public, *others])


def test_a_certificate_from_the_second_trusted_authority_is_admitted_during_rollover(cluster) -> None:
    new = make_throwaway_cluster(["n"], now=NOW)
    trust = TrustStore([cluster.authority.public, new.authority.public])
    assert trust.admit(new.nodes[0].certificate.encode(), NOW).name == "n"
    assert trust.admit(cluster.nodes[0].certificate.encode(), NOW).name == "a"
