"""Key files, credential loading, and the keygen / authority commands."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from meshcore.cli._keys import main
from meshcore.errors import CredentialError
from meshcore.security import (
    AuthorityDir,
    SigningKey,
    load_credentials,
    load_secret_key,
    make_throwaway_cluster,
    save_secret_key,
)

NOW = 1_700_000_000.0


def test_a_key_file_is_written_with_mode_0600_and_loads_back(tmp_path: Path) -> None:
    key = SigningKey.generate()
    save_secret_key(key, tmp_path / "node.key")
    assert (tmp_path / "node.key").stat().st_mode & 0o777 == 0o600
    assert load_secret_key(tmp_path / "node.key").public_key == key.public_key


def test_a_key_file_others_can_read_is_refused_with_the_chmod_fix(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    save_secret_key(SigningKey.generate(), path)
    os.chmod(path, 0o644)
    with pytest.raises(CredentialError, match=f"chmod 600 {path}"):
        load_secret_key(path)


def test_a_missing_key_file_names_the_keygen_fix(tmp_path: Path) -> None:
    with pytest.raises(CredentialError, match="meshcore keygen --out"):
        load_secret_key(tmp_path / "nope.key")


def test_an_existing_key_file_is_never_overwritten(tmp_path: Path) -> None:
    save_secret_key(SigningKey.generate(), tmp_path / "k")
    with pytest.raises(CredentialError, match="already exists"):
        save_secret_key(SigningKey.generate(), tmp_path / "k")


@pytest.fixture
def files(tmp_path: Path):
    cluster = make_throwaway_cluster(["a", "b"], now=NOW, directory=tmp_path)
    return cluster, tmp_path


def test_credentials_load_from_files_written_by_the_throwaway_cluster(files) -> None:
    cluster, d = files
    creds = load_credentials(d / "a.key", d / "a.cert", [d / "authority.pub"], now=NOW)
    assert creds.certificate == cluster.nodes[0].certificate


def test_a_certificate_of_another_key_is_a_mismatch_naming_both_files(files) -> None:
    _, d = files
    with pytest.raises(CredentialError, match=r"b\.cert certifies node .* but .*a\.key"):
        load_credentials(d / "a.key", d / "b.cert", [d / "authority.pub"], now=NOW)


def test_an_expired_certificate_names_the_file_and_the_fix(files) -> None:
    _, d = files
    with pytest.raises(CredentialError, match=r"a\.cert: .*expired.*authority sign"):
        load_credentials(d / "a.key", d / "a.cert", [d / "authority.pub"], now=NOW + 400 * 86400)


def test_a_certificate_of_an_unconfigured_authority_is_refused(files, tmp_path: Path) -> None:
    _, d = files
    other = make_throwaway_cluster(["x"], now=NOW, directory=tmp_path / "other")
    with pytest.raises(CredentialError, match="not signed by a trusted authority"):
        load_credentials(d / "a.key", d / "a.cert", [other_pub := tmp_path / "other" / "authority.pub"], now=NOW)
    assert other_pub.exists() and other.nodes


def test_missing_certificate_and_authority_files_name_the_fix(files) -> None:
    _, d = files
    with pytest.raises(CredentialError, match="nope.cert: certificate not found"):
        load_credentials(d / "a.key", d / "nope.cert", [d / "authority.pub"], now=NOW)
    with pytest.raises(CredentialError, match="nope.pub: authority file not found"):
        load_credentials(d / "a.key", d / "a.cert", [d / "nope.pub"], now=NOW)
    (d / "garbage.cert").write_text("hello")
    with pytest.raises(CredentialError, match="not a meshcore certificate file"):
        load_credentials(d / "a.key", d / "garbage.cert", [d / "authority.pub"], now=NOW)


def test_a_node_in_the_revocation_store_cannot_start(files) -> None:
    cluster, d = files
    from meshcore.security import RevocationStore

    store = RevocationStore(d / "revocations")
    store.append(cluster.authority.revoke(cluster.nodes[0].key.node_id, serial=1, revoked_at=int(NOW)))
    with pytest.raises(CredentialError, match="revoked"):
        load_credentials(d / "a.key", d / "a.cert", [d / "authority.pub"], now=NOW, revocations_path=d / "revocations")
    creds = load_credentials(d / "b.key", d / "b.cert", [d / "authority.pub"], now=NOW, revocations_path=d / "revocations")
    assert creds.trust.is_revoked(cluster.nodes[0].key.node_id)


# --- CLI -----------------------------------------------------------------------------------


def test_keygen_and_authority_commands_round_trip(tmp_path: Path, capsys) -> None:
    auth = tmp_path / "auth"
    assert main(["keygen", "--out", str(tmp_path / "n1.key")]) == 0
    assert main(["authority", "init", str(auth), "--cluster", "metro"]) == 0
    assert (auth / "authority.key").stat().st_mode & 0o777 == 0o600
    assert main([
        "authority", "sign", str(auth), "--node-pub", str(tmp_path / "n1.key.pub"), "--name", "n1",
        "--site", "pool-3", "--region", "north", "--roles", "storage,edge", "--out", str(tmp_path / "n1.cert"),
    ]) == 0
    creds = load_credentials(tmp_path / "n1.key", tmp_path / "n1.cert", [auth / "authority.pub"], now=__import__("time").time())
    assert (creds.certificate.site, creds.certificate.roles, creds.certificate.serial) == ("pool-3", ("storage", "edge"), 1)
    assert main(["authority", "revoke", str(auth), "--cert", str(tmp_path / "n1.cert")]) == 0
    capsys.readouterr()
    assert main(["authority", "list", str(auth)]) == 0
    out = capsys.readouterr().out
    assert "REVOKED" in out and "pool-3" in out
    revs = AuthorityDir(auth).revocations.load()
    assert [r.node for r in revs] == [creds.key.node_id]
    assert creds.trust.add_revocation(revs[0])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["authority", "init", "{d}/a", "--cluster", "bad name!"], "cluster name"),
        (["authority", "sign", "{d}/none", "--node-pub", "{d}/x.pub", "--name", "n", "--site", "s", "--region", "r", "--out", "{d}/c"], "not an authority directory"),
        (["authority", "revoke", "{d}/none", "--node-id", "zz"], "not an authority directory"),
        (["authority"], "required"),
        (["keygen"], "--out"),
    ],
)
def test_bad_cli_input_is_one_line_on_stderr_and_exit_2(tmp_path: Path, capsys, argv, message) -> None:
    assert main([a.replace("{d}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_signing_for_an_existing_authority_with_a_world_readable_key_is_refused(tmp_path: Path, capsys) -> None:
    auth = tmp_path / "auth"
    main(["authority", "init", str(auth), "--cluster", "metro"])
    main(["keygen", "--out", str(tmp_path / "n.key")])
    os.chmod(auth / "authority.key", 0o640)
    cert = tmp_path / "n.cert"
    assert main(["authority", "sign", str(auth), "--node-pub", str(tmp_path / "n.key.pub"), "--name", "n",
                 "--site", "s", "--region", "r", "--out", str(cert)]) == 2
    assert "chmod 600" in capsys.readouterr().err and not cert.exists()
