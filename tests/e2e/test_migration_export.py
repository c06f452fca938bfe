"""Export jobs (`strata admin export`): data return to a directory a customer reads without
Strata, checked by `strata admin export verify DIR` (offline), and to a second real Strata
server. Checks what a customer would: every version's bytes are a file, the manifest says what
each file is (key, version, metadata, tags, checksums), a flipped byte or a missing or extra file
fails verification naming the file, and a kill -9 mid-export resumes with nothing written twice.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from conftest import det_bytes, make_s3
from harness import IS_MOTO
from test_migration_more import seed_history

pytestmark = pytest.mark.skipif(IS_MOTO, reason="export jobs are a strata admin feature")


def s3_of(srv):
    return make_s3(srv.endpoint, srv.access_key, srv.secret_key)


def status(srv, name):
    return srv.admin_json("--json", "export", "status", name)


def wait_state(srv, name, states, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        st = status(srv, name)
        if st["state"] in states:
            return st
        assert time.monotonic() < deadline, f"job still {st['state']}: {st}"
        time.sleep(0.2)


def manifest(out: Path) -> list[dict]:
    lines = []
    for seg in sorted((out / "manifest").iterdir()):
        lines += [json.loads(x) for x in seg.read_text("utf-8").splitlines()]
    return lines


def verify(srv, out: Path):
    # offline: no endpoint, no credentials
    return srv.admin("export", "verify", str(out), offline=True)


def test_export_versions_to_a_directory_and_verify(make_server, tmp_path):
    srv = make_server()
    s = s3_of(srv)
    s.create_bucket(Bucket="src")
    hist = seed_history(s)  # unicode keys, a null version, delete markers, tags, metadata, empty
    s.put_object(Bucket="src", Key="rich/..", Body=b"dots", ContentType="text/x-dots",
                 CacheControl="max-age=9", Metadata={"who": "bob"}, StorageClass="STANDARD_IA")
    hist["rich/.."] = [("v", None, b"dots", {"who": "bob"}, {})]
    out = tmp_path / "export-1"

    # operator mistakes are refused and create nothing
    for bad, msg in [("relative/dir", "absolute"), (str(srv.data_dir / "x"), "data directory"),
                     (str(srv.data_dir.parent), "data directory")]:
        r = srv.admin("export", "start", "bad", "src", f"--to-dir={bad}")
        assert r.returncode != 0 and msg in r.stderr, r.stderr
    r = srv.admin("export", "start", "bad", "nope", f"--to-dir={out}")
    assert r.returncode != 0 and "no bucket" in r.stderr
    assert not out.exists()

    srv.admin_json("--json", "export", "start", "ret1", "src", f"--to-dir={out}", "--versions",
                   "--concurrency=2")
    st = wait_state(srv, "ret1", {"DONE", "ERROR"})
    assert st["state"] == "DONE", st
    n_versions = sum(1 for h in hist.values() for e in h if e[0] == "v")
    n_markers = sum(1 for h in hist.values() for e in h if e[0] == "m")
    assert (st["objects_copied"], st["delete_markers_copied"], st["objects_failed"]) == (
        n_versions, n_markers, 0)
    assert st["kind"] == "export" and st["to_dir"] == str(out)

    r = verify(srv, out)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"OK: {n_versions} files" in r.stdout

    # the manifest, read without Strata: each key's history with its version ids, newest first
    # per key as S3 lists them; every file is the version's bytes
    lines = manifest(out)
    summary = json.loads((out / "manifest.json").read_text())
    assert (summary["files"], summary["delete_markers"], summary["versions"]) == (
        n_versions, n_markers, True)
    listed = s.list_object_versions(Bucket="src")
    want_ids = {(v["Key"], v["VersionId"]) for v in listed.get("Versions", []) + listed.get("DeleteMarkers", [])}
    assert {(e["key"], e["version_id"]) for e in lines} == want_ids
    assert len(lines) == len(want_ids)  # nothing twice
    for key, h in hist.items():
        mine = [e for e in lines if e["key"] == key]
        kinds = ["m" if e["delete_marker"] else "v" for e in mine]
        assert sorted(kinds) == sorted(x[0] for x in h), key
        bodies = sorted(x[2] for x in h if x[0] == "v")
        files = []
        for e in mine:
            if e["delete_marker"]:
                assert e["path"] is None
                continue
            p = out / e["path"]
            assert p.resolve().is_relative_to((out / "data").resolve())
            data = p.read_bytes()
            assert hashlib.sha256(data).hexdigest() == e["sha256"] and len(data) == e["size"]
            assert e["etag"] == hashlib.md5(data).hexdigest()
            files.append(data)
        assert sorted(files) == bodies, key
    k = "ünï/ключ.txt"
    latest = [e for e in lines if e["key"] == k and e["is_latest"]][0]
    assert latest["user_metadata"] == [["n", "3"]] and sorted(latest["tags"]) == [["env", "prod"], ["team", "red"]]
    rich = [e for e in lines if e["key"] == "rich/.."][0]
    assert (rich["content_type"], rich["cache_control"], rich["storage_class"]) == (
        "text/x-dots", "max-age=9", "STANDARD_IA")
    assert rich["path"].startswith("data/rich/%2E./@")
    assert all(e["last_modified"].endswith("Z") for e in lines)

    # a flipped byte, a missing file, an extra file: each named, exit non-zero
    victim = out / latest["path"]
    raw = bytearray(victim.read_bytes())
    raw[0] ^= 1
    victim.write_bytes(bytes(raw))
    r = verify(srv, out)
    assert r.returncode != 0 and f"altered: {latest['path']}" in r.stdout, r.stdout
    raw[0] ^= 1
    victim.write_bytes(bytes(raw))
    assert verify(srv, out).returncode == 0
    (out / "data" / "stray.bin").write_bytes(b"x")
    gone = [e for e in lines if e["path"] and e["size"] == 0][0]
    (out / gone["path"]).unlink()
    r = verify(srv, out)
    assert r.returncode != 0
    assert "extra: data/stray.bin" in r.stdout and f"missing: {gone['path']}" in r.stdout, r.stdout

    # a second export into the same (non-empty) directory is refused
    r = srv.admin("export", "start", "again", "src", f"--to-dir={out}")
    assert r.returncode != 0 and "not empty" in r.stderr


def test_export_current_versions_to_a_second_server(make_server):
    src, dst = make_server(), make_server()
    s, d = s3_of(src), s3_of(dst)
    s.create_bucket(Bucket="src")
    d.create_bucket(Bucket="back")
    bodies = {"plain": b"hello", "ünï/ключ": det_bytes(1, 70_000), "empty": b"", "old": b"gone"}
    for k, b in bodies.items():
        s.put_object(Bucket="src", Key=k, Body=b)
    s.put_object(Bucket="src", Key="rich", Body=b"rich", ContentType="application/x-r",
                 ContentDisposition="inline", Metadata={"a": "1"}, Tagging="t=1&u=2")
    bodies["rich"] = b"rich"
    s.delete_object(Bucket="src", Key="old")  # unversioned: gone, not exported
    del bodies["old"]
    r = src.admin("--json", "export", "start", "back1", "src", f"--to-endpoint={dst.endpoint}",
                  f"--to-access-key={dst.access_key}", f"--to-secret-key={dst.secret_key}",
                  "--to-bucket=back")
    assert r.returncode == 0, r.stderr
    st = wait_state(src, "back1", {"DONE", "ERROR"})
    assert st["state"] == "DONE" and st["objects_copied"] == len(bodies), st
    got = {o["Key"]: o for o in d.list_objects_v2(Bucket="back")["Contents"]}
    want = {o["Key"]: o for o in s.list_objects_v2(Bucket="src")["Contents"]}
    assert {k: (o["Size"], o["ETag"]) for k, o in got.items()} == {
        k: (o["Size"], o["ETag"]) for k, o in want.items()}
    for k, b in bodies.items():
        assert d.get_object(Bucket="back", Key=k)["Body"].read() == b
    h = d.head_object(Bucket="back", Key="rich")
    assert (h["ContentType"], h["ContentDisposition"], h["Metadata"]) == ("application/x-r", "inline", {"a": "1"})
    tags = {t["Key"]: t["Value"] for t in d.get_object_tagging(Bucket="back", Key="rich")["TagSet"]}
    assert tags == {"t": "1", "u": "2"}
    # the remote secret is sealed: never in an answer or the log
    for text in (json.dumps(st), r.stdout, src.log_path.read_text("utf-8", "replace")):
        assert dst.secret_key not in text


def test_export_resumes_after_kill9_writing_nothing_twice(make_server, tmp_path):
    srv = make_server()
    s = s3_of(srv)
    s.create_bucket(Bucket="src")
    n, size = 120, 4096
    for i in range(n):
        s.put_object(Bucket="src", Key=f"k/{i:04d}", Body=det_bytes(i, size))
    out = tmp_path / "export-kill"
    # 480 KiB at 96 KiB/s: about five seconds, room to crash mid-export
    srv.admin_json("--json", "export", "start", "slow", "src", f"--to-dir={out}",
                   "--concurrency=2", "--bandwidth=96KiB")
    deadline = time.monotonic() + 30
    while status(srv, "slow")["objects_copied"] < 30:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    srv.kill9()
    assert not (out / "manifest.json").exists()
    r = verify(srv, out)
    assert r.returncode != 0 and "incomplete" in r.stdout
    srv.start()
    st = wait_state(srv, "slow", {"DONE", "ERROR"})
    assert st["state"] == "DONE", st
    assert (st["objects_listed"], st["objects_copied"], st["objects_failed"]) == (n, n, 0)
    lines = manifest(out)
    assert sorted(e["key"] for e in lines) == [f"k/{i:04d}" for i in range(n)]  # once each
    r = verify(srv, out)
    assert r.returncode == 0, r.stdout
    assert not (out / ".partial").exists()


def test_status_watch_prints_plain_lines_until_the_job_ends(make_server, tmp_path):
    srv = make_server()
    s = s3_of(srv)
    s.create_bucket(Bucket="src")
    for i in range(40):
        s.put_object(Bucket="src", Key=f"w/{i:03d}", Body=det_bytes(i, 4096))
    # 160 KiB at 64 KiB/s: a few seconds of progress to watch
    srv.admin_json("--json", "export", "start", "watched", "src", f"--to-dir={tmp_path / 'w'}",
                   "--concurrency=1", "--bandwidth=64KiB")
    r = srv.admin("export", "status", "watched", "--watch", "--watch-timeout=60", timeout=90)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    # not a terminal: one plain line per change, no bar, no escape sequences; the last says DONE
    assert len(lines) >= 2, lines
    assert all(x.startswith("watched ") for x in lines) and "\x1b" not in r.stdout
    assert lines[-1].startswith("watched DONE listed 40 copied 40"), lines[-1]
    # bounded in time: a job that does not end stops the watch at --watch-timeout (exit 2)
    srv.admin_json("--json", "export", "start", "held", "src", f"--to-dir={tmp_path / 'h'}",
                   "--bandwidth=1KiB")
    srv.admin_json("--json", "export", "pause", "held")
    t = time.monotonic()
    r = srv.admin("export", "status", "held", "--watch", "--watch-timeout=2", timeout=30)
    assert r.returncode == 2 and "still PAUSED" in r.stderr, (r.returncode, r.stderr)
    assert time.monotonic() - t < 15
    srv.admin_json("--json", "export", "cancel", "held")


def test_export_versions_to_an_endpoint_resumes_after_kill9(make_server):
    """kill -9 of the exporting server mid-job: after the restart the remote holds every version
    and delete marker exactly once, in order, with the right bytes."""
    src, dst = make_server(), make_server()
    s, d = s3_of(src), s3_of(dst)
    s.create_bucket(Bucket="src")
    s.put_bucket_versioning(Bucket="src", VersioningConfiguration={"Status": "Enabled"})
    d.create_bucket(Bucket="back")
    d.put_bucket_versioning(Bucket="back", VersioningConfiguration={"Status": "Enabled"})
    hist: dict[str, list] = {}
    for i in range(40):
        key = f"k/{i:03d}"
        for j in range(3):
            body = det_bytes(i * 10 + j, 4096)
            s.put_object(Bucket="src", Key=key, Body=body)
            hist.setdefault(key, []).append(hashlib.md5(body).hexdigest())
        if i % 5 == 0:
            s.delete_object(Bucket="src", Key=key)
            hist[key].append("marker")
    versions = sum(1 for h in hist.values() for e in h if e != "marker")
    markers = sum(1 for h in hist.values() for e in h if e == "marker")
    # 480 KiB at 96 KiB/s: about five seconds, room to crash mid-export
    r = src.admin("--json", "export", "start", "back2", "src", "--versions",
                  f"--to-endpoint={dst.endpoint}", f"--to-access-key={dst.access_key}",
                  f"--to-secret-key={dst.secret_key}", "--to-bucket=back", "--concurrency=2",
                  "--bandwidth=96KiB")
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 30
    while status(src, "back2")["objects_copied"] < 30:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    src.kill9()
    src.start()
    st = wait_state(src, "back2", {"DONE", "ERROR"})
    assert st["state"] == "DONE", st
    assert (st["objects_copied"], st["delete_markers_copied"], st["objects_failed"]) == (
        versions, markers, 0), st

    got: dict[str, list] = {}
    latest_marker = set()
    for page in d.get_paginator("list_object_versions").paginate(Bucket="back"):
        for v in page.get("Versions", []):  # newest first within a key
            got.setdefault(v["Key"], []).append(v["ETag"].strip('"'))
        for m in page.get("DeleteMarkers", []):
            got.setdefault(m["Key"], []).append("marker")
            if m["IsLatest"]:
                latest_marker.add(m["Key"])
    # exactly once: the same versions in the same order, the same number of markers
    for key, h in hist.items():
        vs = [e for e in got.get(key, []) if e != "marker"]
        assert vs[::-1] == [e for e in h if e != "marker"], key
        assert got[key].count("marker") == h.count("marker"), key
    assert set(got) == set(hist)
    assert latest_marker == {k for k, h in hist.items() if h[-1] == "marker"}
    for key, h in hist.items():
        if h[-1] != "marker":
            body = d.get_object(Bucket="back", Key=key)["Body"].read()
            assert hashlib.md5(body).hexdigest() == h[-1], key
