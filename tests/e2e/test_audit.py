"""The audit log end to end (docs/audit.md): every request and operator action is recorded
before it is answered, an export verifies offline with the log's public key and any edit to it
is caught, failed authentications are searchable, and no secret is ever in it."""

from __future__ import annotations

import base64
import json
import os
import urllib.parse
import urllib.request

import pytest
from botocore.exceptions import ClientError

from conftest import make_s3

pytestmark = pytest.mark.strata_only(reason="strata's audit log")


def export(srv, out, *flags) -> list[dict]:
    r = srv.admin("--json", "audit", "export", *flags, str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    return [json.loads(line)["record"] for line in (out / "records.jsonl").read_text().splitlines()]


def verify(srv, out, pub):
    return srv.admin("audit", "verify", str(out), "--public-key", str(pub), offline=True)


def code(e: ClientError) -> str:
    return e.response["Error"]["Code"]


def test_audit_log_records_verifies_and_holds_no_secret(fresh_server, tmp_path):
    srv = fresh_server
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    # An operator action, whose answer carries a secret that must not reach the log.
    bob = srv.admin_json("--json", "user", "add", "bob")
    s3.create_bucket(Bucket="aud")
    s3.put_object(Bucket="aud", Key="dir/a.txt", Body=b"x" * 1234)
    assert s3.get_object(Bucket="aud", Key="dir/a.txt")["Body"].read() == b"x" * 1234
    # A presigned GET: its signature is in the URL.
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "aud", "Key": "dir/a.txt"},
                                    ExpiresIn=300)
    presig = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)["X-Amz-Signature"][0]
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.read() == b"x" * 1234
    # An SSE-C key sent (over plain HTTP, so refused): the key is not logged either.
    ssec = os.urandom(32)
    with pytest.raises(ClientError):
        s3.put_object(Bucket="aud", Key="c", Body=b"c", SSECustomerAlgorithm="AES256",
                      SSECustomerKey=ssec)
    # Failed authentications: a wrong secret, an unknown key.
    wrong = make_s3(srv.endpoint, srv.access_key, srv.secret_key[:-1] + ("A" if srv.secret_key[-1] != "A" else "B"))
    with pytest.raises(ClientError) as e:
        wrong.list_objects_v2(Bucket="aud")
    assert code(e.value) == "SignatureDoesNotMatch"
    ghost = make_s3(srv.endpoint, "AKIAGHOSTGHOSTGHOST1", "x" * 40)
    with pytest.raises(ClientError) as e:
        ghost.head_bucket(Bucket="aud")
    s3.delete_object(Bucket="aud", Key="dir/a.txt")

    # Failed authentications are searchable.
    found = srv.admin_json("--json", "audit", "search", "--failed-auth", "--since", "1h")
    failed = [f["record"] for f in found]
    assert {r["access_key"] for r in failed} >= {srv.access_key, "AKIAGHOSTGHOSTGHOST1"}, failed
    assert all(r["auth_failed"] and r["status"] in (403, 400) and r["user"] is None for r in failed)
    assert any(r["error_code"] == "SignatureDoesNotMatch" and r["remote"].startswith("127.0.0.1:")
               for r in failed)
    text = srv.admin("audit", "search", "--failed-auth", "--since", "1h")
    assert text.returncode == 0 and "SignatureDoesNotMatch" in text.stdout, text.stdout + text.stderr

    # Every request is in the export, with who, what, from where and the result.
    out = tmp_path / "export"
    recs = export(srv, out)
    ops = [(r["operation"], r["bucket"], r["key"], r["status"]) for r in recs]
    assert ("ADMIN.user-add", None, None, 200) in ops, ops
    assert ("REST.PUT.BUCKET", "aud", None, 200) in ops, ops
    put = next(r for r in recs if r["operation"] == "REST.PUT.OBJECT" and r["status"] == 200)
    assert put["user"] == "admin" and put["access_key"] == srv.access_key, put
    assert put["key"] == "dir/a.txt" and put["bytes_in"] == 1234 and put["request_id"], put
    assert put["remote"].startswith("127.0.0.1:") and "Boto3" in (put["user_agent"] or ""), put
    gets = [r for r in recs if r["operation"] == "REST.GET.OBJECT" and r["status"] == 200]
    assert len(gets) == 2 and all(g["bytes_out"] == 1234 for g in gets), gets
    assert any(r["operation"] == "REST.DELETE.OBJECT" and r["status"] == 204 for r in recs), ops
    assert all(r["duration_ms"] >= 0 and r["time_ms"] > 0 for r in recs)

    # No secret anywhere: not in the export, not in the log's files.
    secrets = [srv.secret_key, bob["secret_key"], presig, base64.b64encode(ssec).decode()]
    blobs = [p.read_bytes() for p in out.iterdir()]
    blobs += [p.read_bytes() for p in (srv.data_dir / "audit-log").iterdir()
              if p.is_file() and not p.name.startswith("log-key")]
    for s in secrets:
        assert not any(s.encode() in b for b in blobs), f"secret {s[:4]}... is in the audit log"

    # A third party verifies it offline with the public key alone...
    pub = tmp_path / "audit.pub.pem"
    pem = srv.admin("audit", "public-key", "--data-dir", str(srv.data_dir), offline=True)
    assert pem.returncode == 0, pem.stderr
    pub.write_text(pem.stdout)
    ok = verify(srv, out, pub)
    assert ok.returncode == 0 and ok.stdout.startswith("OK: "), ok.stdout + ok.stderr
    # ... a filtered export too ...
    only = tmp_path / "only-aud"
    sel = export(srv, only, "--bucket", "aud", "--user", "admin", "--since", "1h")
    assert sel and all(r["bucket"] == "aud" and r["user"] == "admin" for r in sel)
    assert verify(srv, only, pub).returncode == 0
    # ... and an edited record (a failed request made to look successful) is caught.
    lines = (out / "records.jsonl").read_text().splitlines(keepends=True)
    i = next(n for n, line in enumerate(lines) if '"status":403' in line)
    lines[i] = lines[i].replace('"status":403', '"status":200', 1)
    (out / "records.jsonl").write_text("".join(lines))
    bad = verify(srv, out, pub)
    assert bad.returncode == 1 and "altered" in bad.stdout, bad.stdout
    # A removed record too.
    del lines[i]
    (out / "records.jsonl").write_text("".join(lines))
    assert verify(srv, out, pub).returncode == 1


def test_acknowledged_request_survives_kill9(fresh_server, tmp_path):
    srv = fresh_server
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    s3.create_bucket(Bucket="durable")
    s3.put_object(Bucket="durable", Key="last", Body=b"1")
    srv.restart(crash=True)
    recs = export(srv, tmp_path / "after-crash", "--bucket", "durable")
    assert any(r["operation"] == "REST.PUT.OBJECT" and r["key"] == "last" and r["status"] == 200
               for r in recs), recs
