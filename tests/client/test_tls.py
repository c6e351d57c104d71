"""A relay serving wss:// (its own TLS), and clients that verify its certificate."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from backchannel.client.errors import ClientError
from backchannel.relay.limits import RelayLimits
from backchannel.relay.server import RelayServer
from backchannel.relay.store import open_store

from .conftest import MakePrincipal, pair


def _self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relay.test")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "relay.crt", folder / "relay.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def _tls_relay(tmp_path: Path) -> tuple[RelayServer, Path]:
    cert, key = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    limits = RelayLimits()
    server = RelayServer(
        open_store(f"sqlite:///{tmp_path / 'relay.db'}", limits), limits, port=0, tls=context
    )
    await server.start()
    return server, cert


async def test_a_channel_over_wss_with_a_verified_certificate(
    tmp_path: Path, make_principal: MakePrincipal, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, cert = await _tls_relay(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the clients trust this relay's certificate
    try:
        assert server.url.startswith("wss://")
        w, b = make_principal("w"), make_principal("b")
        await pair(w, b, [server.url])
        await w.send("b", "over TLS")
        await b.sync()
        assert [e.text for e in b.inbox()] == ["over TLS"]
    finally:
        await server.stop()


async def test_a_certificate_the_client_does_not_trust_means_unreachable(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    server, _cert = await _tls_relay(tmp_path)
    try:
        with pytest.raises(ClientError, match="cannot be reached"):
            await make_principal("w").invite([server.url])
    finally:
        await server.stop()


def test_relay_serve_wants_certificate_and_key_together(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from backchannel.cli.main import app

    cert, _key = _self_signed(tmp_path)
    result = CliRunner().invoke(
        app,
        [
            "relay",
            "serve",
            "--port",
            "0",
            "--tls-cert",
            str(cert),
            "--db",
            f"sqlite:///{tmp_path / 'r.db'}",
        ],
    )
    assert result.exit_code == 2 and "go together" in result.output
    broken = tmp_path / "broken.pem"
    broken.write_text("not a key")
    result = CliRunner().invoke(
        app,
        [
            "relay",
            "serve",
            "--port",
            "0",
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(broken),
            "--db",
            f"sqlite:///{tmp_path / 'r.db'}",
        ],
    )
    assert result.exit_code == 2 and "cannot load the certificate" in result.output
