"""`chordcast certs`: what the CA issues, as a real CA would (usages, validity, SANs, serials,
key files readable by their owner only), and the refusals of the tooling itself."""

from __future__ import annotations

import datetime
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from chordcast import certs
from chordcast.cli.main import main
from chordcast.tls import TlsConfig, TlsError, node_name


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def sans(cert: x509.Certificate) -> x509.SubjectAlternativeName:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def test_a_node_certificate_is_bound_to_its_address_and_usable_both_ways(tmp_path: Path) -> None:
    ca = certs.init_ca(tmp_path)
    issued = certs.issue_node(tmp_path, "10.1.2.3:7000", dns=("node-0.chordcast.svc",))
    cert, ca_cert = load(issued.cert), load(ca.cert)
    assert issued.identity == "chordcast://node/10.1.2.3:7000"
    names = sans(cert)
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == [issued.identity]
    assert node_name("10.1.2.3:7000") in names.get_values_for_type(x509.DNSName)
    assert "node-0.chordcast.svc" in names.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["10.1.2.3"]
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    cert.verify_directly_issued_by(ca_cert)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc > datetime.timedelta(days=364)
    assert stat.S_IMODE(issued.key.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "ca.key").stat().st_mode) == 0o600
    # Another node's certificate gets another serial and another key.
    other = load(certs.issue_node(tmp_path, "10.1.2.3:7001").cert)
    assert other.serial_number != cert.serial_number
    assert other.public_key() != cert.public_key()
    # A port is part of the name a peer checks: two ports, two names.
    assert node_name("10.1.2.3:7000") != node_name("10.1.2.3:7001")


def test_a_client_certificate_can_only_be_a_client(tmp_path: Path) -> None:
    certs.init_ca(tmp_path)
    issued = certs.issue_client(tmp_path, "alice", days=3)
    cert = load(issued.cert)
    assert issued.identity == "chordcast://client/alice"
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.not_valid_after_utc - cert.not_valid_before_utc < datetime.timedelta(days=4)
    with pytest.raises(certs.CertError, match="client name"):
        certs.issue_client(tmp_path, "bad name")


def test_the_tooling_refuses_what_it_must(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    with pytest.raises(certs.CertError, match="no CA"):
        certs.issue_client(tmp_path, "alice")
    certs.init_ca(tmp_path)
    with pytest.raises(certs.CertError, match="exists"):
        certs.init_ca(tmp_path)  # a CA is never replaced by accident
    first = load(tmp_path / "ca.pem").serial_number
    certs.init_ca(tmp_path, force=True)
    assert load(tmp_path / "ca.pem").serial_number != first
    # The command: a table or JSON, one-line errors with exit 1, usage errors exit 2.
    assert main(["certs", "client", "bob", "--dir", str(tmp_path), "--json"]) == 0
    assert '"identity": "chordcast://client/bob"' in capsys.readouterr().out
    assert main(["certs", "client", "bob", "--dir", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip().endswith("exists (use --force to replace it)")
    with pytest.raises(SystemExit) as usage:
        main(["certs", "node", "no-port", "--dir", str(tmp_path)])
    assert usage.value.code == 2


def test_tls_files_come_whole_or_not_at_all(tmp_path: Path) -> None:
    certs.init_ca(tmp_path)
    issued = certs.issue_client(tmp_path, "alice")
    env = {"CHORDCAST_TLS_CERT": str(issued.cert), "CHORDCAST_TLS_KEY": str(issued.key),
           "CHORDCAST_TLS_CA": str(tmp_path / "ca.pem")}
    assert TlsConfig.from_options(None, None, None, environ={}) is None
    config = TlsConfig.from_options(None, None, None, environ=env)
    assert config is not None and config.cert == issued.cert
    with pytest.raises(TlsError, match="give --tls-cert and --tls-key together"):
        TlsConfig.from_options(str(issued.cert), None, str(tmp_path / "ca.pem"), environ={})
    with pytest.raises(TlsError, match="missing --tls-ca"):
        TlsConfig.from_options(str(issued.cert), str(issued.key), None, environ={})
    with pytest.raises(TlsError, match="cannot read"):
        TlsConfig.from_options(str(tmp_path / "nope.pem"), str(issued.key),
                               str(tmp_path / "ca.pem"), environ={})
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(TlsError, match="not a PEM file"):
        TlsConfig.from_options(str(tmp_path / "junk.pem"), str(issued.key),
                               str(tmp_path / "ca.pem"), environ={})


def test_tls_files_must_fit_together(tmp_path: Path) -> None:
    certs.init_ca(tmp_path)
    alice, bob = certs.issue_client(tmp_path, "alice"), certs.issue_client(tmp_path, "bob")
    ca = str(tmp_path / "ca.pem")
    with pytest.raises(TlsError, match="does not belong to the certificate"):
        TlsConfig.from_options(str(alice.cert), str(bob.key), ca, environ={})
    with pytest.raises(TlsError, match="not a CA certificate"):
        TlsConfig.from_options(str(alice.cert), str(alice.key), str(bob.cert), environ={})
    # A certificate and its key come from one place (never one identity's certificate with
    # another's key); the CA may come from the environment.
    env = {"CHORDCAST_TLS_CERT": str(alice.cert), "CHORDCAST_TLS_KEY": str(alice.key),
           "CHORDCAST_TLS_CA": ca}
    with pytest.raises(TlsError, match="give --tls-cert and --tls-key together"):
        TlsConfig.from_options(str(bob.cert), None, None, environ=env)
    as_bob = TlsConfig.from_options(str(bob.cert), str(bob.key), None, environ=env)
    assert as_bob == TlsConfig(bob.cert, bob.key, tmp_path / "ca.pem")
    assert TlsConfig.from_options(None, None, None, environ=env) == TlsConfig(
        str(alice.cert), str(alice.key), ca)  # (strings are paths too)


def test_no_two_addresses_share_a_certificate_name() -> None:
    spellings = ["my.host:7000", "my-host:7000", "my_host:7000", "10.0.0.1:7000",
                 "[::10.0.0.1]:7000", "10.0.0.1:7001", "[::1]:7000", "localhost:7000"]
    names = {node_name(a) for a in spellings}
    assert len(names) == len(spellings)
    assert all(len(label) <= 63 for n in names for label in n.split("."))
