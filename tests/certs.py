"""Certificates for TLS tests, made with the real openssl command in a test's tmp_path."""

from __future__ import annotations

import subprocess
from pathlib import Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(directory: Path, name: str = "ca") -> tuple[Path, Path]:
    """A self-signed CA: (certificate, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=test {name}",
             "-keyout", str(key), "-out", str(cert), cwd=directory)
    return cert, key


def make_cert(directory: Path, ca: tuple[Path, Path], name: str, *,
              client: bool = False) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 / localhost (server) or a client certificate, signed by ``ca``."""
    cert, key, csr, ext = (directory / f"{name}.crt", directory / f"{name}.key", directory / f"{name}.csr",
                           directory / f"{name}.ext")
    usage = "clientAuth" if client else "serverAuth"
    ext.write_text(f"subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage={usage}\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", str(key),
             "-out", str(csr), cwd=directory)
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial",
             "-days", "2", "-extfile", str(ext), "-out", str(cert), cwd=directory)
    return cert, key
