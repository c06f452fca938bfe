"""The audit log end to end (docs/audit.md): every request and operator action is recorded
before it is answered, an export verifies offline with the log's public key and any edit to it
is caught, failed authentications are searchable, and no secret is ever in it."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import urllib.parse
import urllib.request

import pytest
from botocore.exceptions import ClientError

from conftest import make_s3
from harness import scrubbed_environ, strata_binary

pytestmark = pytest.mark.strata_only(reason="strata's audit log")


def export(srv, out, *flags) -> list[dict]:
    """The exported records of every segment, in order (each segment is `seg-NNNNNN/`)."""
    r = srv.admin("--json", "audit", "export", *flags, str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    return [json.loads(line)["record"] for seg in sorted(out.glob("seg-*"))
            for line in (seg / "records.jsonl").read_text().splitlines()]


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
    blobs = [p.read_bytes() for p in out.rglob("*") if p.is_file()]
    blobs += [p.read_bytes() for p in (srv.data_dir / "audit-log").rglob("*")
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
    seg1 = out / "seg-000001" / "records.jsonl"
    lines = seg1.read_text().splitlines(keepends=True)
    i = next(n for n, line in enumerate(lines) if '"status":403' in line)
    lines[i] = lines[i].replace('"status":403', '"status":200', 1)
    seg1.write_text("".join(lines))
    bad = verify(srv, out, pub)
    assert bad.returncode == 1 and "altered" in bad.stdout and "segment 1" in bad.stdout, bad.stdout
    # A removed record too.
    del lines[i]
    seg1.write_text("".join(lines))
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


# A tiny segment (20 records) and a 90-day retention of 10 ms days (0.9 s): the test-only day
# is refused without --lifecycle-day-secs, the 90-day floor holds as it does for real days.
RETENTION_ARGS = ["--audit-segment-records", "20", "--audit-retention-days", "90",
                  "--audit-test-day-ms", "10", "--lifecycle-day-secs", "1"]


def _retention_worker(srv) -> dict:
    return next(w for w in srv.admin_json("worker", "list") if w["name"] == "audit-retention")


def test_retention_deletes_expired_segments_and_what_remains_verifies(make_server, tmp_path):
    srv = make_server(extra_args=RETENTION_ARGS)
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    s3.create_bucket(Bucket="ret")
    for i in range(45):
        s3.put_object(Bucket="ret", Key=f"k{i}", Body=b"r")
    audit = srv.data_dir / "audit-log"
    assert (audit / "seg-000003").is_dir(), sorted(p.name for p in audit.iterdir())
    # Past the retention the worker deletes sealed segments, oldest first (never the newest
    # sealed one nor the active one).
    deadline = time.monotonic() + 15
    while True:
        w = _retention_worker(srv)
        if w["status"]["segments_deleted"] >= 1:
            break
        assert time.monotonic() < deadline, w
        time.sleep(0.2)
    assert w["status"]["records_deleted"] >= 20 and w["units"] >= 1 and w["errors"] == 0, w
    assert not (audit / "seg-000001").exists()
    segments = json.loads((audit / "segments.json").read_text())["segments"]
    assert segments[0]["state"] == "deleted" and segments[0]["checkpoint"]["tree_size"] == 20

    # The deletion is itself recorded, naming the segment's range and anchor.
    found = srv.admin_json("--json", "audit", "search", "--since", "1h")
    dels = [f for f in found if f["record"]["operation"] == "AUDIT.retention-delete"]
    first = next(d["record"]["link"] for d in dels if d["record"]["link"]["segment"] == 1)
    assert first["first_index"] == 0 and first["tree_size"] == 20, first
    assert first["root_hash"] == segments[0]["checkpoint"]["root_hash"]
    # Search still finds requests of the segments kept, by their global index.
    puts = [f for f in found if f["record"]["operation"] == "REST.PUT.OBJECT"]
    assert puts and all(p["index"] >= 20 for p in puts), puts[:3]

    # Export and verify what remains: the deleted segment shows as its signed anchor.
    out = tmp_path / "after-retention"
    recs = export(srv, out)
    assert not (out / "seg-000001").exists() and (out / "segments.jsonl").exists()
    assert any(r["operation"] == "REST.PUT.OBJECT" and r["key"] == "k44" for r in recs)
    pub = tmp_path / "audit.pub.pem"
    pub.write_text(srv.admin("audit", "public-key", "--data-dir", str(srv.data_dir),
                             offline=True).stdout)
    ok = verify(srv, out, pub)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "segment 1 (deleted, not in the export): anchor 20 records from 0" in ok.stdout, ok.stdout
    # An edited anchor fails, naming its segment.
    lines = (out / "segments.jsonl").read_text().splitlines(keepends=True)
    lines[0] = lines[0].replace('"tree_size":20', '"tree_size":19', 1)
    (out / "segments.jsonl").write_text("".join(lines))
    bad = verify(srv, out, pub)
    assert bad.returncode == 1 and "segment 1" in bad.stdout, bad.stdout


def test_a_retention_below_three_months_is_refused(tmp_path):
    env = scrubbed_environ()
    for k in [k for k in env if k.startswith("STRATA_")]:
        del env[k]
    never = tmp_path / "never"
    for args in (["--audit-retention-days", "89"],
                 ["--audit-test-day-ms", "10"]):  # the test day alone: refused
        p = subprocess.run([str(strata_binary()), "serve", "--data-dir", str(never), *args],
                           env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=30)
        assert p.returncode != 0 and args[0] in p.stderr, p.stderr
        assert "ready on" not in p.stdout
    assert not never.exists()
