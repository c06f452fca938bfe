"""HTTPS with real clients (docs/gateway.md, "TLS"): the self-signed certificate of
`--tls-self-signed`, HTTP and HTTPS side by side, an HTTPS-only listener, and certificates
reloaded on SIGHUP without dropping established connections."""

from __future__ import annotations

import http.client
import os
import signal
import ssl
import stat
import subprocess
import time

import pytest
from botocore.exceptions import ClientError, SSLError

from conftest import Clients, det_bytes, make_s3
from harness import free_port

pytestmark = pytest.mark.strata_only(reason="TLS options of strata serve")


class At:
    """What `Clients` needs of a server, at another endpoint."""

    def __init__(self, srv, endpoint: str):
        self.endpoint = endpoint
        self.access_key, self.secret_key = srv.access_key, srv.secret_key


def openssl_pair(dir_, name: str):
    """A certificate for 127.0.0.1 with subject CN=name, made by openssl (not by Strata)."""
    cert, key = dir_ / f"{name}.crt", dir_ / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True,
                   stdin=subprocess.DEVNULL, timeout=30)
    return cert, key


def served_cert(port: int) -> str:
    """The PEM certificate a new TLS connection to the port is shown."""
    return ssl.get_server_certificate(("127.0.0.1", port), timeout=5)


def same_cert(a: str, b: str) -> bool:
    return ssl.PEM_cert_to_DER_cert(a) == ssl.PEM_cert_to_DER_cert(b)


def test_https_beside_http_with_boto3_awscli_rclone_and_admin(make_server, tmp_path):
    tls_port = free_port()
    srv = make_server(extra_args=["--tls-self-signed", "--tls-listen", f"127.0.0.1:{tls_port}"])
    https = f"https://127.0.0.1:{tls_port}"
    cert = srv.data_dir / "tls" / "cert.pem"
    key = srv.data_dir / "tls" / "key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert cert.exists()

    s3 = make_s3(https, srv.access_key, srv.secret_key, verify=str(cert))
    s3.create_bucket(Bucket="tls")
    body = det_bytes("tls", 3 * 1024 * 1024 + 17)
    put = s3.put_object(Bucket="tls", Key="k", Body=body)
    got = s3.get_object(Bucket="tls", Key="k")
    assert got["Body"].read() == body and got["ETag"] == put["ETag"]
    # Plain HTTP keeps serving beside it, the same data.
    plain = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    assert plain.get_object(Bucket="tls", Key="k")["Body"].read() == body
    # SSE-C needs a secure connection: accepted over HTTPS, refused over plain HTTP.
    ckey = bytes(range(32))
    sse_c = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": ckey}
    s3.put_object(Bucket="tls", Key="ssec", Body=b"customer", **sse_c)
    assert s3.get_object(Bucket="tls", Key="ssec", **sse_c)["Body"].read() == b"customer"
    with pytest.raises(ClientError) as e:
        plain.put_object(Bucket="tls", Key="ssec2", Body=b"x", **sse_c)
    assert e.value.response["Error"]["Code"] == "InvalidRequest"
    # A client that does not trust the certificate refuses the connection.
    with pytest.raises(SSLError):
        make_s3(https, srv.access_key, srv.secret_key, verify=True).list_buckets()

    c = Clients(At(srv, https), tmp_path / "clients")
    src = tmp_path / "up.bin"
    src.write_bytes(det_bytes("cli", 200_000))
    c.aws("--ca-bundle", str(cert), "s3", "cp", str(src), "s3://tls/cli")
    out = c.aws("--ca-bundle", str(cert), "s3", "ls", "s3://tls/")
    assert b"cli" in out.stdout
    bad = c.aws("s3", "ls", "s3://tls/", check=False)
    assert bad.returncode != 0 and b"SSL" in (bad.stderr + bad.stdout)
    c.rclone("--ca-cert", str(cert), "copyto", str(src), "strata:tls/rc")
    listed = c.rclone("--ca-cert", str(cert), "lsf", "strata:tls")
    assert sorted(listed.stdout.split()) == [b"cli", b"k", b"rc", b"ssec"]
    untrusted = c.rclone("lsf", "strata:tls", "--retries", "1", "--low-level-retries", "1", check=False)
    assert untrusted.returncode != 0 and b"certificate" in untrusted.stderr
    assert s3.get_object(Bucket="tls", Key="rc")["Body"].read() == src.read_bytes()
    assert s3.get_object(Bucket="tls", Key="cli")["Body"].read() == src.read_bytes()

    # The operator CLI over HTTPS.
    r = srv.admin("--json", "user", "list")
    assert r.returncode == 0
    cmd_base = [f"--endpoint={https}", f"--access-key={srv.access_key}", f"--secret-key={srv.secret_key}"]
    r = srv.admin(*cmd_base, "--ca-bundle", str(cert), "--json", "user", "list", offline=True)
    assert r.returncode == 0 and srv.access_key in r.stdout, r.stderr
    r = srv.admin(*cmd_base, "--json", "user", "list", offline=True)
    assert r.returncode != 0 and "--ca-bundle" in r.stderr


def test_https_only_listener(make_server):
    srv = make_server(extra_args=["--tls-self-signed"])
    assert srv.endpoint.startswith("https://")
    cert = srv.data_dir / "tls" / "cert.pem"
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key, verify=str(cert))
    s3.create_bucket(Bucket="only")
    s3.put_object(Bucket="only", Key="k", Body=b"secure")
    assert s3.get_object(Bucket="only", Key="k")["Body"].read() == b"secure"
    # Plain HTTP to that port gets no HTTP answer.
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
        conn.request("GET", "/_strata/health")
        conn.getresponse().read()
    # The same certificate after a restart (created once).
    before = cert.read_bytes()
    srv.stop()
    srv.start()
    assert cert.read_bytes() == before
    assert s3.get_object(Bucket="only", Key="k")["Body"].read() == b"secure"


def test_sighup_reloads_the_certificate_and_keeps_connections(make_server, tmp_path):
    one_c, one_k = openssl_pair(tmp_path, "one")
    two_c, two_k = openssl_pair(tmp_path, "two")
    live_c, live_k = tmp_path / "live.crt", tmp_path / "live.key"
    live_c.write_bytes(one_c.read_bytes())
    live_k.write_bytes(one_k.read_bytes())
    tls_port = free_port()
    srv = make_server(extra_args=["--tls-cert", str(live_c), "--tls-key", str(live_k),
                                  "--tls-listen", f"127.0.0.1:{tls_port}"])
    assert same_cert(served_cert(tls_port), one_c.read_text())

    # An established keep-alive connection, trusting both certificates.
    ctx = ssl.create_default_context()
    ctx.load_verify_locations(cafile=str(one_c))
    ctx.load_verify_locations(cafile=str(two_c))
    conn = http.client.HTTPSConnection("127.0.0.1", tls_port, context=ctx, timeout=10)
    conn.request("GET", "/_strata/health")
    assert conn.getresponse().read() and conn.sock is not None
    sock = conn.sock

    live_c.write_bytes(two_c.read_bytes())
    live_k.write_bytes(two_k.read_bytes())
    os.kill(srv.proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not same_cert(served_cert(tls_port), two_c.read_text()):
        time.sleep(0.1)
    assert same_cert(served_cert(tls_port), two_c.read_text()), "new handshakes see the new certificate"
    conn.request("GET", "/_strata/health")
    r = conn.getresponse()
    assert r.status == 200 and r.read()
    assert conn.sock is sock, "the connection made before the reload was kept"

    # A broken pair is refused on reload and the current one stays.
    live_c.write_text("not a certificate\n")
    os.kill(srv.proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "reload failed" not in srv.log_tail():
        time.sleep(0.1)
    assert "reload failed" in srv.log_tail()
    assert same_cert(served_cert(tls_port), two_c.read_text())
    s3 = make_s3(f"https://127.0.0.1:{tls_port}", srv.access_key, srv.secret_key, verify=str(two_c))
    assert s3.list_buckets()["Buckets"] == []
