"""Migration jobs beyond current versions (docs/migration.md): `--versions` (every version and
delete marker, oldest first, the source version id queryable per version), large objects copied
by parts and resumed at the part after kill -9, cancel aborting a half-copied object, https
sources with a CA bundle, and a master-key rotation that re-seals job secrets.

Two real Strata servers on 127.0.0.1; part sizes at S3's 5 MiB minimum and small bandwidth
limits keep every test to a few seconds.
"""

from __future__ import annotations

import http.client
import http.server
import json
import threading
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from conftest import det_bytes, make_s3
from harness import IS_MOTO
from test_migration import report, s3_of, start, status, wait_state

pytestmark = pytest.mark.skipif(IS_MOTO, reason="migration jobs are a strata admin feature")

MiB = 1024 * 1024


def origins(dst, bucket, key):
    """The destination's versions of `key`, oldest first, with their recorded origins."""
    v = dst.admin_json("--json", "migration", "origins", bucket, key)
    return list(reversed(v["versions"]))


def wait_for(pred, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def seed_history(s):
    """Versions and delete markers of unicode keys, with a null version first; returns each
    key's history oldest first as (kind, source version id, body, metadata, tags)."""
    hist: dict[str, list] = {}
    # written before versioning is enabled: the source's `null` version
    s.put_object(Bucket="src", Key="ünï/ключ.txt", Body=b"v0 null", Metadata={"n": "0"})
    hist["ünï/ключ.txt"] = [("v", "null", b"v0 null", {"n": "0"}, {})]
    s.put_bucket_versioning(Bucket="src", VersioningConfiguration={"Status": "Enabled"})

    def put(key, body, meta, tags=""):
        extra = {"Tagging": tags} if tags else {}
        r = s.put_object(Bucket="src", Key=key, Body=body, Metadata=meta, **extra)
        t = dict(p.split("=") for p in tags.split("&")) if tags else {}
        hist.setdefault(key, []).append(("v", r["VersionId"], body, meta, t))

    def delete(key):
        r = s.delete_object(Bucket="src", Key=key)
        hist.setdefault(key, []).append(("m", r["VersionId"], None, None, None))

    put("ünï/ключ.txt", b"v1 body", {"n": "1"}, "team=blue")
    delete("ünï/ключ.txt")
    put("ünï/ключ.txt", det_bytes(3, 20_000), {"n": "3"}, "team=red&env=prod")
    put("日本語 キー", b"only once", {"lang": "ja"})
    delete("日本語 キー")  # its latest is a delete marker
    put("a+b & c", b"", {})
    put("a+b & c", b"second", {"k": "v"})
    return hist


def test_versions_arrive_in_order_with_their_source_version_ids(make_server):
    src, dst = make_server(), make_server()
    s, d = s3_of(src), s3_of(dst)
    s.create_bucket(Bucket="src")
    hist = seed_history(s)
    # the destination must keep history: refused with the reason, nothing created
    d.create_bucket(Bucket="flat")
    r = dst.admin("migration", "start", "flat", f"--source-endpoint={src.endpoint}",
                  f"--source-access-key={src.access_key}", f"--source-secret-key={src.secret_key}",
                  "--source-bucket=src", "--bucket=flat", "--versions")
    assert r.returncode != 0 and "versioning enabled" in r.stderr, r.stderr
    assert json.loads(dst.admin("--json", "migration", "list").stdout) == []

    d.create_bucket(Bucket="dst")
    d.put_bucket_versioning(Bucket="dst", VersioningConfiguration={"Status": "Enabled"})
    start(dst, src, "hist", "src", "dst", "--versions", "--concurrency=2")
    st = wait_state(dst, "hist", {"DONE", "ERROR"})
    assert st["state"] == "DONE", st
    versions = sum(1 for h in hist.values() for e in h if e[0] == "v")
    markers = sum(1 for h in hist.values() for e in h if e[0] == "m")
    assert (st["objects_listed"], st["objects_copied"], st["delete_markers_copied"],
            st["objects_failed"]) == (versions + markers, versions, markers, 0), st

    for key, want in hist.items():
        got = origins(dst, "dst", key)
        # same kinds in the same order, each with the source version id it came from
        assert [("m" if g["is_delete_marker"] else "v", g["origin"]["source_version_id"])
                for g in got] == [(w[0], w[1]) for w in want], key
        assert all(g["origin"]["job"] == "hist" for g in got)
        for g, w in zip(got, want):
            if w[0] == "m":
                continue
            o = d.get_object(Bucket="dst", Key=key, VersionId=g["version_id"])
            assert o["Body"].read() == w[2], key
            assert o["Metadata"] == w[3], key
            tags = d.get_object_tagging(Bucket="dst", Key=key, VersionId=g["version_id"])["TagSet"]
            assert {t["Key"]: t["Value"] for t in tags} == w[4], key
            assert g["origin"]["source_etag"] == o["ETag"].strip('"')
    # the current state matches: the key whose latest is a marker reads as deleted
    with pytest.raises(d.exceptions.ClientError) as e:
        d.get_object(Bucket="dst", Key="日本語 キー")
    assert e.value.response["Error"]["Code"] == "NoSuchKey"
    assert d.get_object(Bucket="dst", Key="a+b & c")["Body"].read() == b"second"

    # nothing failed or skipped
    lines = [json.loads(x) for x in report(dst, "hist").stdout.splitlines()]
    assert lines[-1]["summary"]["state"] == "DONE" and lines[:-1] == []


def test_versions_resume_after_kill9_adds_nothing_twice(make_server):
    src, dst = make_server(), make_server()
    s, d = s3_of(src), s3_of(dst)
    s.create_bucket(Bucket="src")
    s.put_bucket_versioning(Bucket="src", VersioningConfiguration={"Status": "Enabled"})
    n, per = 16, 3
    for i in range(n):
        for j in range(per):
            s.put_object(Bucket="src", Key=f"k/{i:03d}", Body=det_bytes(i * 10 + j, 2048))
        if i % 4 == 0:
            s.delete_object(Bucket="src", Key=f"k/{i:03d}")
    markers = (n + 3) // 4
    d.create_bucket(Bucket="dst")
    d.put_bucket_versioning(Bucket="dst", VersioningConfiguration={"Status": "Enabled"})
    # 96 KiB at 24 KiB/s: two steps of 8 keys, two seconds each
    start(dst, src, "vk", "src", "dst", "--versions", "--concurrency=2", "--bandwidth=24KiB")

    def mid_step():
        # versions at the destination that no committed step counts yet: the crash must redo
        # a step that already copied some of its versions
        at_dst = len(d.list_object_versions(Bucket="dst").get("Versions", []))
        return at_dst > status(dst, "vk")["objects_copied"]
    wait_for(mid_step, "a step in the middle of its copies")
    dst.kill9()
    dst.start()
    st = wait_state(dst, "vk", {"DONE", "ERROR"})
    assert st["state"] == "DONE", st
    assert (st["objects_copied"], st["delete_markers_copied"], st["objects_failed"]) \
        == (n * per, markers, 0), st
    listing = d.list_object_versions(Bucket="dst")
    assert len(listing.get("Versions", [])) == n * per
    assert len(listing.get("DeleteMarkers", [])) == markers
    src_listing = s.list_object_versions(Bucket="src")
    for i in range(n):
        key = f"k/{i:03d}"
        got = [g["origin"]["source_version_id"] for g in origins(dst, "dst", key)]
        want = {v["VersionId"] for v in src_listing["Versions"] if v["Key"] == key} \
            | {m["VersionId"] for m in src_listing.get("DeleteMarkers", []) if m["Key"] == key}
        assert len(got) == len(set(got)) == per + (i % 4 == 0), key
        assert set(got) == want, key


class _Proxy(http.server.BaseHTTPRequestHandler):
    """Forwards GET and HEAD to the source unchanged (the signature stays valid: same Host
    header) and records each (method, path, Range); flips the first byte of GET bodies of keys
    containing `corrupt` (object and part reads, not the listings or tagging)."""

    upstream: tuple[str, int] = ("127.0.0.1", 0)
    seen: list

    def _forward(self, method):
        self.seen.append((method, self.path, self.headers.get("Range")))
        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        conn.request(method, self.path, headers=dict(self.headers.items()))
        resp = conn.getresponse()
        body = resp.read()
        if method == "GET" and "corrupt" in urlsplit(self.path).path and "tagging" not in self.path \
                and "versions" not in self.path and body:
            body = bytes([body[0] ^ 1]) + body[1:]
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() in ("transfer-encoding", "connection"):
                continue
            self.send_header(k, v)
        self.end_headers()
        if method == "GET":
            self.wfile.write(body)
        conn.close()

    def do_GET(self):
        self._forward("GET")

    def do_HEAD(self):
        self._forward("HEAD")

    def log_message(self, *args):
        pass


def proxy_for(src):
    seen: list = []
    handler = type("P", (_Proxy,), {"upstream": ("127.0.0.1", src.port), "seen": seen})
    p = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=p.serve_forever, daemon=True).start()
    return p, f"http://127.0.0.1:{p.server_address[1]}", seen


def seed_big(s):
    """A 3-part multipart object (5 MiB, 5 MiB, 100 KiB) and an 11 MiB single-part one."""
    mp = s.create_multipart_upload(Bucket="src", Key="big/multi ü")
    parts, body = [], b""
    for n, size in ((1, 5 * MiB), (2, 5 * MiB), (3, 100 * 1024)):
        chunk = det_bytes(100 + n, size)
        e = s.upload_part(Bucket="src", Key="big/multi ü", UploadId=mp["UploadId"], PartNumber=n, Body=chunk)
        parts.append({"PartNumber": n, "ETag": e["ETag"]})
        body += chunk
    s.complete_multipart_upload(Bucket="src", Key="big/multi ü", UploadId=mp["UploadId"],
                                MultipartUpload={"Parts": parts})
    single = det_bytes(200, 11 * MiB)
    s.put_object(Bucket="src", Key="big/single", Body=single, ContentType="application/x-big",
                 Metadata={"size": "11MiB"})
    s.put_object(Bucket="src", Key="small", Body=b"small one")
    return {"big/multi ü": body, "big/single": single, "small": b"small one"}


def part_reads(seen, key_path):
    """GET reads of the first part of an object: `partNumber=1` or a range from byte 0."""
    n = 0
    for method, path, rng in seen:
        u = urlsplit(path)
        if method != "GET" or not u.path.endswith(key_path):
            continue
        q = parse_qs(u.query)
        if q.get("partNumber") == ["1"] or (rng or "").startswith("bytes=0-"):
            n += 1
    return n


def test_large_objects_copy_by_parts_and_resume_at_the_part_after_kill9(make_server):
    src, dst = make_server(), make_server()
    s, d = s3_of(src), s3_of(dst)
    s.create_bucket(Bucket="src")
    d.create_bucket(Bucket="dst")
    bodies = seed_big(s)
    proxy, endpoint, seen = proxy_for(src)
    try:
        # ~21 MiB at 6 MiB/s: about 3.5 s, parts of 5 MiB
        start(dst, src, "parts", "src", "dst", "--concurrency=1", "--bandwidth=6MiB",
              "--part-threshold=5MiB", "--part-size=5MiB", endpoint=endpoint)
        flight = wait_for(lambda: [f for f in status(dst, "parts")["parts_in_flight"]
                                   if f["parts_done"] >= 1], "a part copied")
        assert flight[0]["parts_total"] == 3
        # half-copied: not visible at the destination
        with pytest.raises(d.exceptions.ClientError):
            d.head_object(Bucket="dst", Key=flight[0]["key"])
        dst.kill9()
        dst.start()
        st = wait_state(dst, "parts", {"DONE", "ERROR"})
    finally:
        proxy.shutdown()
    assert st["state"] == "DONE", st
    assert (st["objects_copied"], st["objects_failed"]) == (3, 0), st
    assert st["parts_resumed"] >= 1 and st["parts_in_flight"] == []
    for k, b in bodies.items():
        assert d.get_object(Bucket="dst", Key=k)["Body"].read() == b, k
    # a completed part is never read again: each object's first part was read once
    assert part_reads(seen, "/big/multi%20%C3%BC") == 1
    assert part_reads(seen, "/big/single") == 1
    # the multipart structure is kept: same ETag, same parts
    sh, dh = s.head_object(Bucket="src", Key="big/multi ü"), d.head_object(Bucket="dst", Key="big/multi ü")
    assert dh["ETag"] == sh["ETag"] and sh["ETag"].endswith('-3"')
    assert d.head_object(Bucket="dst", Key="big/multi ü", PartNumber=2)["ContentLength"] == 5 * MiB
    single = d.head_object(Bucket="dst", Key="big/single")
    assert single["ETag"].endswith('-3"') and single["ContentType"] == "application/x-big"
    assert single["Metadata"] == {"size": "11MiB"}
    assert not d.list_multipart_uploads(Bucket="dst").get("Uploads")
    assert dst.admin_json("--json", "migration", "origins", "dst", "big/single")["versions"][0][
        "origin"]["source_etag"] == s.head_object(Bucket="src", Key="big/single")["ETag"].strip('"')


def test_corrupted_part_fails_and_cancel_aborts_the_upload(make_server):
    src, dst = make_server(), make_server()
    s, d = s3_of(src), s3_of(dst)
    s.create_bucket(Bucket="src")
    d.create_bucket(Bucket="dst")
    s.put_object(Bucket="src", Key="corrupt-big", Body=det_bytes(7, 6 * MiB))
    proxy, endpoint, _ = proxy_for(src)
    try:
        start(dst, src, "bad", "src", "dst", "--part-threshold=5MiB", "--part-size=5MiB",
              endpoint=endpoint)
        st = wait_state(dst, "bad", {"DONE", "ERROR"})
    finally:
        proxy.shutdown()
    # every part stored is what was read, but the whole is not the source's: a failure, and
    # the upload is gone
    assert (st["state"], st["objects_copied"], st["objects_failed"]) == ("DONE", 0, 1), st
    entry = [json.loads(x) for x in report(dst, "bad").stdout.splitlines()][0]
    assert entry["key"] == "corrupt-big" and "source's MD5" in entry["error"], entry
    assert not d.list_objects_v2(Bucket="dst").get("Contents")
    assert not d.list_multipart_uploads(Bucket="dst").get("Uploads")

    # cancel mid-object: the destination keeps no upload and no object
    s.put_object(Bucket="src", Key="slow-big", Body=det_bytes(8, 11 * MiB))
    d.create_bucket(Bucket="dst2")
    start(dst, src, "cx", "src", "dst2", "--part-threshold=5MiB", "--part-size=5MiB",
          "--bandwidth=4MiB", "--concurrency=1")
    wait_for(lambda: any(f["parts_done"] >= 1 for f in status(dst, "cx")["parts_in_flight"]),
             "a part copied")
    dst.admin_json("--json", "migration", "cancel", "cx")
    wait_for(lambda: not d.list_multipart_uploads(Bucket="dst2").get("Uploads")
             and not status(dst, "cx")["parts_in_flight"], "the upload aborted", timeout=20)
    time.sleep(1.5)  # the step that was running ends; it must not leave an upload either
    assert not d.list_multipart_uploads(Bucket="dst2").get("Uploads")
    assert not d.list_objects_v2(Bucket="dst2").get("Contents")
    assert status(dst, "cx")["state"] == "CANCELLED"


def test_https_source_with_a_ca_bundle(make_server):
    src = make_server(extra_args=["--tls-self-signed"])
    dst = make_server()
    assert src.endpoint.startswith("https://")
    cert = src.data_dir / "tls" / "cert.pem"
    s = make_s3(src.endpoint, src.access_key, src.secret_key, verify=str(cert))
    d = s3_of(dst)
    s.create_bucket(Bucket="src")
    d.create_bucket(Bucket="dst")
    s.put_object(Bucket="src", Key="tls/ключ", Body=det_bytes(9, 50_000), Metadata={"via": "tls"})
    start(dst, src, "tls", "src", "dst", f"--source-ca-bundle={cert}")
    st = wait_state(dst, "tls", {"DONE", "ERROR"})
    assert (st["state"], st["objects_copied"], st["source_ca_bundle"]) == ("DONE", 1, True), st
    got = d.get_object(Bucket="dst", Key="tls/ключ")
    assert got["Body"].read() == det_bytes(9, 50_000) and got["Metadata"] == {"via": "tls"}
    # without the bundle the self-signed certificate is not trusted: the job says why
    d.create_bucket(Bucket="dst2")
    start(dst, src, "untrusted", "src", "dst2")
    st = wait_for(lambda: (lambda v: v if v["last_error"] or v["state"] == "ERROR" else None)(
        status(dst, "untrusted")), "the TLS failure")
    assert "certificate" in (st["last_error"] or st["error"] or "").lower(), st
    assert st["objects_copied"] == 0
    dst.admin_json("--json", "migration", "cancel", "untrusted")
    # a bundle that is not PEM is refused at start
    bad = src.data_dir / "not-pem.txt"
    bad.write_text("not a certificate")
    r = dst.admin("migration", "start", "badca", f"--source-endpoint={src.endpoint}",
                  f"--source-access-key={src.access_key}", f"--source-secret-key={src.secret_key}",
                  "--source-bucket=src", "--bucket=dst2", f"--source-ca-bundle={bad}")
    assert r.returncode != 0 and "CA bundle" in r.stderr, r.stderr
