"""Test PKI made with the openssl CLI.

make_certs(dir) creates a test CA and a server certificate for 127.0.0.1 /
localhost signed by it; make_self_signed(dir) creates a certificate that no
test CA signed (to check that the gateway refuses it).
"""
import subprocess
from pathlib import Path


def _run(args, cwd):
    subprocess.run(["openssl"] + args, cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_certs(directory, name="test"):
    """Return (ca_file, cert_file, key_file), creating them if needed."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ca_key, ca = d / f"{name}-ca.key", d / f"{name}-ca.pem"
    key, csr, cert = d / f"{name}-server.key", d / f"{name}-server.csr", d / f"{name}-server.pem"
    ext = d / f"{name}-server.ext"
    if ca.exists() and cert.exists() and key.exists():
        return str(ca), str(cert), str(key)
    _run(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "3650",
          "-keyout", str(ca_key), "-out", str(ca),
          "-subj", f"/CN=VM-X {name} CA",
          "-addext", "basicConstraints=critical,CA:TRUE",
          "-addext", "keyUsage=critical,keyCertSign,cRLSign"], d)
    _run(["req", "-newkey", "rsa:2048", "-nodes", "-sha256",
          "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost"], d)
    ext.write_text("basicConstraints=CA:FALSE\n"
                   "keyUsage=critical,digitalSignature,keyEncipherment\n"
                   "extendedKeyUsage=serverAuth\n"
                   "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _run(["x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
          "-CAcreateserial", "-days", "3650", "-sha256", "-extfile", str(ext),
          "-out", str(cert)], d)
    return str(ca), str(cert), str(key)


def make_self_signed(directory, name="rogue"):
    """A server certificate for 127.0.0.1 signed by a CA the gateway does not trust.

    Returns (ca_file, cert_file, key_file) of that separate PKI."""
    return make_certs(directory, name=name)
