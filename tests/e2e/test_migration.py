"""Migration jobs (`strata admin migration`): import from a second real Strata server.

Two servers on 127.0.0.1: SOURCE seeded with boto3, DEST running the job. Checks what an operator
would: every byte, header, tag and class arrives; the counters and the report say what happened;
pause/resume and kill -9 of the destination neither lose nor duplicate anything; a byte corrupted
on the way (a proxy in front of the source) is a failure in the report and leaves nothing at the
destination. Small objects only: the suite stays fast.
"""

from __future__ import annotations

import hashlib
import http.client
import http.server
import json
import threading
import time

import pytest

from conftest import det_bytes, make_s3
from harness import IS_MOTO

pytestmark = pytest.mark.skipif(IS_MOTO, reason="migration jobs are a strata admin feature")


def s3_of(srv):
    return make_s3(srv.endpoint, srv.access_key, srv.secret_key)


def start(dst, src, name, src_bucket, dst_bucket, *extra, endpoint=None):
    return dst.admin_json(
        "--json", "migration", "start", name,
        f"--source-endpoint={endpoint or src.endpoint}",
        f"--source-access-key={src.access_key}",
        f"--source-secret-key={src.secret_key}",
        f"--source-bucket={src_bucket}", f"--bucket={dst_bucket}", *extra)


def status(dst, name):
    return dst.admin_json("--json", "migration", "status", name)


def wait_state(dst, name, states, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        st = status(dst, name)
        if st["state"] in states:
            return st
        assert time.monotonic() < deadline, f"job still {st['state']}: {st}"
        time.sleep(0.2)


def report(dst, name, *extra):
    r = dst.admin("migration", "report", name, *extra)
    assert r.returncode == 0, r.stderr
    return r


def test_import_preserves_objects_and_reports_skips(make_server):
    src, dst = make_server(), make_server()
    s, d = s3_of(src), s3_of(dst)
    s.create_bucket(Bucket="src")
    d.create_bucket(Bucket="dst")
    bodies = {
        "plain.txt": b"hello migration",
        "dir/ünïcödé ключ.bin": det_bytes(1, 70_000),
        "empty": b"",
        "with spaces & plus+.dat": det_bytes(2, 1234),
    }
    for k, b in bodies.items():
        s.put_object(Bucket="src", Key=k, Body=b)
    s.put_object(Bucket="src", Key="rich", Body=b"rich body",
                 ContentType="application/x-rich", ContentEncoding="identity",
                 ContentDisposition='attachment; filename="r.txt"', ContentLanguage="fr",
                 CacheControl="max-age=60", Expires="Wed, 21 Oct 2037 07:28:00 GMT",
                 Metadata={"owner": "alice", "project": "migr-1"}, Tagging="team=blue&env=prod",
                 StorageClass="STANDARD_IA")
    bodies["rich"] = b"rich body"
    s.put_object(Bucket="src", Key="crc", Body=b"checked by crc32", ChecksumAlgorithm="CRC32")
    bodies["crc"] = b"checked by crc32"
    # a multipart object: its ETag is not an MD5
    mp = s.create_multipart_upload(Bucket="src", Key="multi")
    parts, mbody = [], b""
    for n in (1, 2):
        chunk = det_bytes(10 + n, 5 * 1024 * 1024 if n == 1 else 1000)
        e = s.upload_part(Bucket="src", Key="multi", UploadId=mp["UploadId"], PartNumber=n, Body=chunk)
        parts.append({"PartNumber": n, "ETag": e["ETag"]})
        mbody += chunk
    s.complete_multipart_upload(Bucket="src", Key="multi", UploadId=mp["UploadId"],
                                MultipartUpload={"Parts": parts})
    bodies["multi"] = mbody
    # already at the destination: identical (skipped) and different (copied over)
    d.put_object(Bucket="dst", Key="plain.txt", Body=b"hello migration")
    d.put_object(Bucket="dst", Key="empty", Body=b"not empty here")

    out = start(dst, src, "job1", "src", "dst", "--concurrency=3")
    assert out["state"] in ("INITIALIZED", "STARTED")
    st = wait_state(dst, "job1", {"DONE", "ERROR"})
    assert st["state"] == "DONE", st
    n = len(bodies)
    assert st["objects_listed"] == n
    assert st["objects_copied"] == n - 1
    assert st["objects_skipped"] == 1 and st["skipped_identical"] == 1
    assert st["objects_failed"] == 0
    assert st["bytes_copied"] == sum(len(b) for k, b in bodies.items() if k != "plain.txt")

    for k, b in bodies.items():
        got = d.get_object(Bucket="dst", Key=k)
        assert got["Body"].read() == b, k
    rich = d.head_object(Bucket="dst", Key="rich")
    assert rich["ContentType"] == "application/x-rich"
    assert rich["ContentEncoding"] == "identity"
    assert rich["ContentDisposition"] == 'attachment; filename="r.txt"'
    assert rich["ContentLanguage"] == "fr"
    assert rich["CacheControl"] == "max-age=60"
    assert rich["Metadata"] == {"owner": "alice", "project": "migr-1"}
    assert rich["StorageClass"] == "STANDARD_IA"
    tags = {t["Key"]: t["Value"] for t in d.get_object_tagging(Bucket="dst", Key="rich")["TagSet"]}
    assert tags == {"team": "blue", "env": "prod"}

    # the report: the skip, then the summary; CSV on request
    lines = [json.loads(x) for x in report(dst, "job1").stdout.splitlines()]
    assert lines[-1]["summary"]["state"] == "DONE"
    entries = lines[:-1]
    assert [(e["key"], e["outcome"], e["reason"]) for e in entries] == [("plain.txt", "skipped", "identical")]
    csv = report(dst, "job1", "--csv").stdout.splitlines()
    assert csv[0].startswith("seq,key,outcome") and csv[1].split(",")[1:4] == ["plain.txt", "skipped", "identical"]

    # the source secret is sealed: not in any answer, nor in the server log
    listing = dst.admin("--json", "migration", "list")
    assert listing.returncode == 0 and "job1" in listing.stdout
    for text in (json.dumps(st), listing.stdout, json.dumps(out), dst.log_path.read_text("utf-8", "replace")):
        assert src.secret_key not in text
    # control verbs on a finished job are refused with the reason
    r = dst.admin("migration", "pause", "job1")
    assert r.returncode != 0 and "cannot pause a job in state DONE" in r.stderr


def test_overwrite_never_and_bad_input(make_server):
    src, dst = make_server(), make_server()
    s, d = s3_of(src), s3_of(dst)
    s.create_bucket(Bucket="src")
    d.create_bucket(Bucket="dst")
    s.put_object(Bucket="src", Key="a", Body=b"source a")
    s.put_object(Bucket="src", Key="b", Body=b"source b")
    d.put_object(Bucket="dst", Key="a", Body=b"destination a")
    start(dst, src, "never", "src", "dst", "--overwrite=never")
    st = wait_state(dst, "never", {"DONE", "ERROR"})
    assert (st["state"], st["objects_copied"], st["skipped_exists"]) == ("DONE", 1, 1)
    assert d.get_object(Bucket="dst", Key="a")["Body"].read() == b"destination a"
    # operator mistakes are refused up front and change nothing
    for args, msg in [(("--concurrency=0",), "concurrency"), (("--bandwidth=fast",), "bandwidth")]:
        r = dst.admin("migration", "start", "bad", f"--source-endpoint={src.endpoint}",
                      f"--source-access-key={src.access_key}", f"--source-secret-key={src.secret_key}",
                      "--source-bucket=src", "--bucket=dst", *args)
        assert r.returncode != 0 and msg in r.stderr
    r = dst.admin("migration", "start", "never", f"--source-endpoint={src.endpoint}",
                  "--source-access-key=x", "--source-secret-key=y", "--source-bucket=src", "--bucket=dst")
    assert r.returncode != 0 and "exists" in r.stderr
    r = dst.admin("migration", "start", "nob", f"--source-endpoint={src.endpoint}",
                  "--source-access-key=x", "--source-secret-key=y", "--source-bucket=src", "--bucket=nope")
    assert r.returncode != 0 and "no destination bucket" in r.stderr
    names = [j["name"] for j in json.loads(dst.admin("--json", "migration", "list").stdout)]
    assert names == ["never"]
    # a source that refuses the credentials ends the job in ERROR, with the reason
    d.create_bucket(Bucket="dst2")
    r = dst.admin("--json", "migration", "start", "wrong", f"--source-endpoint={src.endpoint}",
                  f"--source-access-key={src.access_key}", "--source-secret-key=wrong-secret",
                  "--source-bucket=src", "--bucket=dst2")
    assert r.returncode == 0, r.stderr
    st = wait_state(dst, "wrong", {"DONE", "ERROR"})
    assert st["state"] == "ERROR" and "SignatureDoesNotMatch" in st["error"]


def test_pause_resume_and_kill9_copy_everything_once(make_server):
    src, dst = make_server(), make_server()
    s, d = s3_of(src), s3_of(dst)
    s.create_bucket(Bucket="src")
    d.create_bucket(Bucket="dst")
    # versioned destination: a second copy of anything would show as a second version
    d.put_bucket_versioning(Bucket="dst", VersioningConfiguration={"Status": "Enabled"})
    n, size = 120, 4096
    for i in range(n):
        s.put_object(Bucket="src", Key=f"k/{i:04d}", Body=det_bytes(i, size))
    # 480 KiB at 96 KiB/s: about five seconds, room to pause and to crash mid-job
    start(dst, src, "slow", "src", "dst", "--concurrency=2", "--bandwidth=96KiB")
    deadline = time.monotonic() + 30
    while status(dst, "slow")["objects_copied"] < 10:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    dst.admin_json("--json", "migration", "pause", "slow")
    time.sleep(1.0)  # the running step ends
    paused = status(dst, "slow")
    assert paused["state"] == "PAUSED"
    time.sleep(1.0)
    assert status(dst, "slow")["objects_copied"] == paused["objects_copied"] < n
    dst.admin_json("--json", "migration", "resume", "slow")
    deadline = time.monotonic() + 30
    while status(dst, "slow")["objects_copied"] < paused["objects_copied"] + 20:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    dst.kill9()
    dst.start()
    st = wait_state(dst, "slow", {"DONE", "ERROR"})
    assert st["state"] == "DONE", st
    assert (st["objects_listed"], st["objects_copied"], st["objects_failed"]) == (n, n, 0)
    versions = d.list_object_versions(Bucket="dst")
    assert len(versions.get("Versions", [])) == n  # nothing copied twice
    assert not versions.get("DeleteMarkers")
    for i in range(n):
        assert d.get_object(Bucket="dst", Key=f"k/{i:04d}")["Body"].read() == det_bytes(i, size)


class _CorruptingProxy(http.server.BaseHTTPRequestHandler):
    """Forwards requests to the source unchanged (the signature stays valid: same Host header)
    and flips one byte of GET bodies of keys containing `corrupt`; for keys containing `md5` it
    also drops the `x-amz-checksum-*` headers."""

    upstream: tuple[str, int] = ("127.0.0.1", 0)

    def do_GET(self):
        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        conn.request("GET", self.path, headers=dict(self.headers.items()))
        resp = conn.getresponse()
        body = resp.read()
        if "corrupt" in self.path and "?" not in self.path and body:
            body = bytes([body[0] ^ 1]) + body[1:]
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() in ("transfer-encoding", "connection"):
                continue
            if "md5" in self.path and k.lower().startswith("x-amz-checksum-"):
                continue
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        conn.close()

    def log_message(self, *args):
        pass


def test_corrupted_source_bytes_are_failures(make_server):
    src, dst = make_server(), make_server()
    s, d = s3_of(src), s3_of(dst)
    s.create_bucket(Bucket="src")
    d.create_bucket(Bucket="dst")
    s.put_object(Bucket="src", Key="good", Body=b"fine bytes")
    # the proxy hides this one's checksum (a source older than S3's default checksums): only
    # the ETag's MD5 is left to verify by
    s.put_object(Bucket="src", Key="corrupt-md5", Body=det_bytes(5, 3000))
    s.put_object(Bucket="src", Key="corrupt-sha", Body=det_bytes(6, 3000), ChecksumAlgorithm="SHA256")
    handler = type("H", (_CorruptingProxy,), {"upstream": ("127.0.0.1", src.port)})
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=proxy.serve_forever, daemon=True)
    t.start()
    try:
        start(dst, src, "lies", "src", "dst", endpoint=f"http://127.0.0.1:{proxy.server_address[1]}")
        st = wait_state(dst, "lies", {"DONE", "ERROR"})
    finally:
        proxy.shutdown()
    assert st["state"] == "DONE"
    assert (st["objects_copied"], st["objects_failed"]) == (1, 2)
    lines = [json.loads(x) for x in report(dst, "lies").stdout.splitlines()][:-1]
    failed = {e["key"]: e["error"] for e in lines if e["outcome"] == "failed"}
    assert set(failed) == {"corrupt-md5", "corrupt-sha"}
    assert "MD5" in failed["corrupt-md5"] and "SHA256" in failed["corrupt-sha"]
    # nothing half-written is visible
    keys = [o["Key"] for o in d.list_objects_v2(Bucket="dst").get("Contents", [])]
    assert keys == ["good"]
    assert hashlib.md5(d.get_object(Bucket="dst", Key="good")["Body"].read()).hexdigest() \
        == hashlib.md5(b"fine bytes").hexdigest()


def test_master_rotation_reseals_job_secrets(make_server):
    """A master rotation re-seals job source secrets like access-key secrets and then destroys
    the old master key: a paused job resumed after it still opens its secret and finishes."""
    src, dst = make_server(), make_server()
    s, d = s3_of(src), s3_of(dst)
    s.create_bucket(Bucket="src")
    d.create_bucket(Bucket="dst")
    for i in range(20):
        s.put_object(Bucket="src", Key=f"k{i:02d}", Body=det_bytes(i, 4096))
    start(dst, src, "rot", "src", "dst", "--concurrency=1", "--bandwidth=64KiB")
    dst.admin_json("--json", "migration", "pause", "rot")
    r = dst.admin("key", "rotate-master", timeout=120)
    assert r.returncode == 0, r.stderr
    # the old master key is destroyed: only the re-sealed secret, read back after a restart,
    # can open
    dst.restart()
    dst.admin_json("--json", "migration", "resume", "rot")
    st = wait_state(dst, "rot", {"DONE", "ERROR"}, timeout=30)
    assert (st["state"], st["objects_copied"]) == ("DONE", 20), st
    for i in range(20):
        assert d.get_object(Bucket="dst", Key=f"k{i:02d}")["Body"].read() == det_bytes(i, 4096)
