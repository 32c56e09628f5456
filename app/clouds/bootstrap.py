"""What turns a fresh cloud VM into a LabBatch worker: a TLS identity and a start-up script.

The driver makes a private key and a self-signed certificate for each instance, passes them to
the VM with the instance's token (GCE metadata, Azure custom data), and pins the certificate's
SHA-256 fingerprint when it dials (``CreatedInstance.handle["tls_sha256"]``). Nothing here is
stored: the key lives only on the VM, the fingerprint is not a secret.

The start-up script installs the worker agent from a pinned pip requirement (the pool's
``worker_requirement``, default ``labbatch==<this version>``) into ``/opt/labbatch/venv``:
``aiohttp`` first, then the LabBatch package with ``--no-deps`` (the worker needs nothing else,
so the desktop's Qt wheels are never downloaded). A VM image that already has the worker can set
``LABBATCH_WORKER_PYTHON`` in the environment to skip the install; the tests' fake VMs do that.
"""

from __future__ import annotations

import datetime
import hashlib
import shlex
from dataclasses import dataclass
from importlib import metadata

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

WORKER_PORT = 8443
# GCE metadata keys holding the instance's secrets (read once by the start-up script)
TOKEN_KEY = "labbatch-token"
TLS_CERT_KEY = "labbatch-tls-cert"
TLS_KEY_KEY = "labbatch-tls-key"
GCE_METADATA_URL = "http://metadata.google.internal/computeMetadata/v1/instance/attributes"
CERT_VALID_DAYS = 3650


def default_requirement() -> str:
    """The pip requirement of the worker that matches this LabBatch."""
    try:
        return f"labbatch=={metadata.version('labbatch')}"
    except metadata.PackageNotFoundError:  # running from a source tree that was not installed
        return "labbatch"


@dataclass(frozen=True, slots=True, repr=False)
class TlsIdentity:
    """A worker's private key and self-signed certificate (PEM), and the pin of the latter."""

    cert_pem: str
    key_pem: str
    sha256: str  # hex digest of the certificate's DER bytes

    def __repr__(self) -> str:  # the key must never reach a log
        return f"TlsIdentity(sha256={self.sha256})"


def make_tls_identity(instance_name: str) -> TlsIdentity:
    """A fresh P-256 key and a certificate for ``instance_name``, valid for ten years."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, instance_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=CERT_VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(instance_name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return TlsIdentity(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
        sha256=hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest(),
    )


@dataclass(frozen=True, slots=True, repr=False)
class WorkerBoot:
    """Everything the start-up script of one instance needs."""

    name: str
    cores_mcpu: int
    token: str
    tls: TlsIdentity
    port: int = WORKER_PORT
    requirement: str = ""  # empty: default_requirement()
    idle_timeout_s: float | None = None
    orphan_timeout_s: float = 600.0  # a desktop may sleep; jobs outlive a short absence

    def __repr__(self) -> str:
        return f"WorkerBoot(name={self.name!r}, port={self.port})"


_HEAD = """\
#!/bin/sh
# LabBatch worker start-up for instance {name} (made by the LabBatch driver).
set -eu
LB_HOME="${{LABBATCH_HOME:-/opt/labbatch}}"
umask 077
mkdir -p "$LB_HOME/work"
"""

_FROM_METADATA = """\
MD="${{LABBATCH_METADATA_URL:-{url}}}"
md() {{ curl -fsS --retry 10 --retry-connrefused -H 'Metadata-Flavor: Google' "$MD/$1"; }}
md {token_key} > "$LB_HOME/token"
md {cert_key} > "$LB_HOME/tls.crt"
md {key_key} > "$LB_HOME/tls.key"
"""

_INSTALL_AND_RUN = """\
if [ -n "${{LABBATCH_WORKER_PYTHON:-}}" ]; then
    PY="$LABBATCH_WORKER_PYTHON"  # an image (or a test VM) that has the worker already
else
    if [ ! -x "$LB_HOME/venv/bin/python" ]; then
        if ! python3 -m venv "$LB_HOME/venv"; then
            apt-get update -q
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
            python3 -m venv "$LB_HOME/venv"
        fi
        "$LB_HOME/venv/bin/pip" install -q "aiohttp>=3.9,<4"
        "$LB_HOME/venv/bin/pip" install -q --no-deps {requirement}
    fi
    PY="$LB_HOME/venv/bin/python"
fi
set -- "$PY" -m app.worker --host "${{LABBATCH_WORKER_HOST:-0.0.0.0}}" --port {port} \\
    --name {name} --cores {cores} --work-dir "$LB_HOME/work" \\
    --token-file "$LB_HOME/token" --tls-cert "$LB_HOME/tls.crt" --tls-key "$LB_HOME/tls.key" \\
    --orphan-timeout-s {orphan_timeout}{idle}
if [ -d /run/systemd/system ] && command -v systemd-run >/dev/null; then
    # A unit of its own: restarted if it crashes, and the boot does not wait for it. A clean
    # exit (no driver for the orphan timeout, or told to stop) powers the VM off, so a VM
    # whose driver is gone stops costing compute; the next driver deletes it.
    exec systemd-run --unit=labbatch-worker --property=Restart=on-failure \\
        --property=ExecStopPost="/bin/sh -c 'test \\$\\$SERVICE_RESULT = success && poweroff'" \\
        "$@"
fi
exec "$@"
"""


def _heredoc(path: str, text: str) -> str:
    marker = "LABBATCH_EOF"
    assert marker not in text
    return f"cat > \"$LB_HOME/{path}\" <<'{marker}'\n{text.rstrip(chr(10))}\n{marker}\n"


def _install_and_run(boot: WorkerBoot) -> str:
    idle = f" --idle-timeout-s {boot.idle_timeout_s:g}" if boot.idle_timeout_s else ""
    return _INSTALL_AND_RUN.format(
        requirement=shlex.quote(boot.requirement or default_requirement()),
        port=int(boot.port),
        name=shlex.quote(boot.name),
        cores=f"{boot.cores_mcpu / 1000:g}",
        orphan_timeout=f"{boot.orphan_timeout_s:g}",
        idle=idle,
    )


def gce_startup_script(boot: WorkerBoot) -> str:
    """The ``startup-script`` of a GCE VM: it reads the secrets from the metadata server (see
    ``gce_secret_metadata``), so the script itself holds none."""
    fetch = _FROM_METADATA.format(
        url=GCE_METADATA_URL, token_key=TOKEN_KEY, cert_key=TLS_CERT_KEY, key_key=TLS_KEY_KEY
    )
    return _HEAD.format(name=boot.name) + fetch + _install_and_run(boot)


def gce_secret_metadata(boot: WorkerBoot) -> dict[str, str]:
    """The metadata items that carry the instance's token, certificate and key."""
    return {TOKEN_KEY: boot.token, TLS_CERT_KEY: boot.tls.cert_pem, TLS_KEY_KEY: boot.tls.key_pem}


def inline_startup_script(boot: WorkerBoot) -> str:
    """A start-up script that carries the secrets itself: Azure custom data, which Azure
    hands to the VM once and never returns from its API."""
    files = (
        _heredoc("token", boot.token)
        + _heredoc("tls.crt", boot.tls.cert_pem)
        + _heredoc("tls.key", boot.tls.key_pem)
    )
    return _HEAD.format(name=boot.name) + files + _install_and_run(boot)
