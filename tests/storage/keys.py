"""A throwaway service-account key (made per test run) and a fake IAM signBlob endpoint."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

SA_EMAIL = "labbatch-signer@test-project.iam.gserviceaccount.com"
_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def service_account_info(email: str = SA_EMAIL) -> dict[str, str]:
    """The JSON of a service-account key file holding the throwaway key."""
    pem = _KEY.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return {
        "type": "service_account",
        "project_id": "test-project",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": email,
        "token_uri": "http://127.0.0.1:9/token",
    }


def sign(payload: bytes) -> bytes:
    """RSA-SHA256 of ``payload`` with the throwaway key (what signBlob answers)."""
    return _KEY.sign(payload, padding.PKCS1v15(), hashes.SHA256())


@dataclass
class FakeIam:
    """A signBlob endpoint: the payloads it signed and the accounts asked for."""

    endpoint: str = ""
    signed: list[tuple[str, bytes]] = field(default_factory=list)
    refuse: bool = False


@contextmanager
def fake_iam() -> Iterator[FakeIam]:
    """Serve ``POST /v1/projects/-/serviceAccounts/<email>:signBlob`` on 127.0.0.1."""
    state = FakeIam()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body: Any = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            account = self.path.rsplit("/", 1)[-1].removesuffix(":signBlob")
            if state.refuse:
                self._answer(403, {"error": {"code": 403, "message": "denied"}})
                return
            payload = base64.b64decode(body["payload"])
            state.signed.append((account, payload))
            signed = base64.b64encode(sign(payload)).decode()
            self._answer(200, {"keyId": "k1", "signedBlob": signed})

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
