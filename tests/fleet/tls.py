"""A throwaway CA, a server certificate for 127.0.0.1 and a client certificate, made with the
``openssl`` command, for the etcd TLS tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import attrs

HOW_TO_GET_OPENSSL = "needs the openssl command (apt-get install openssl) to make test certificates"


@attrs.frozen
class TlsFiles:
    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str


def _run(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_tls_files(directory: Path) -> TlsFiles | None:
    """Write the files into ``directory``; None when there is no ``openssl``."""
    if shutil.which("openssl") is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=flagsock test CA",
         cwd=directory)
    # etcd's JSON gateway dials its own gRPC port with the server certificate, so under
    # --client-cert-auth that certificate must be good for client authentication too.
    for name, usage in (("server", "serverAuth,clientAuth"), ("client", "clientAuth")):
        _run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN=flagsock {name}",
             cwd=directory)
        (directory / f"{name}.ext").write_text(f"subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\n")
        _run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=directory)
    d = str(directory)
    return TlsFiles(f"{d}/ca.pem", f"{d}/server.pem", f"{d}/server.key", f"{d}/client.pem", f"{d}/client.key")
