"""TLS to a remote target: its certificate is verified with the trust store httpx uses by default (loaded on a
thread of its own while the specs load). A certificate no trusted authority signed is refused at once, saying
so; trusted through SSL_CERT_FILE, as httpx's default trust store honours, the same plan goes through."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from reconciler.emulator.app import EmulatorApp, Settings
from reconciler.emulator.limits import Limits
from reconciler.emulator.seed import load_seed
from reconciler.emulator.server import BackgroundServer
from reconciler.emulator.store import Store

from .conftest import EXAMPLES, run_cli


@pytest.fixture
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def https_url(authority: trustme.CA) -> Iterator[str]:
    """The examples' space served over HTTPS on 127.0.0.1, with a certificate of a private authority."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    store = Store()
    load_seed(EXAMPLES / "seed.yaml", store)
    server = BackgroundServer(EmulatorApp(store, Settings(limits=Limits.off(), require_auth=False)))
    server.server.socket = context.wrap_socket(server.server.socket, server_side=True)
    with server:
        yield server.url.replace("http://", "https://")
    store.close()


def test_a_certificate_no_trusted_authority_signed_is_refused_then_trusted_through_ssl_cert_file(
        demo: Path, https_url: str, authority: trustme.CA, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NEXUDUS_TOKEN", "secret-token-value")
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    code, out, err = run_cli(capsys, "-v", "--api", https_url, "plan")  # -v: a retry would be said
    assert code == 1, out + err
    assert f"cannot reach {https_url}/api/" in err and "its TLS certificate is not trusted" in err
    assert "retrying" not in err and "secret-token-value" not in out + err

    authority.cert_pem.write_to_path(str(demo / "authority.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(demo / "authority.pem"))
    code, out, err = run_cli(capsys, "--api", https_url, "plan")
    assert code == 0, out + err
    assert "Plan: 26 to create, 2 to delete, 2 to enrol" in out
