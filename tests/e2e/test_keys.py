"""Crypto-shredding, destruction records and the key lifecycle, end to end (docs/keys.md).

The key-scan test reads the data directory the way an attacker with the disks (and the test's own
master key) would, through `keyscan.py`, which knows the formats but none of Strata's code."""

from __future__ import annotations

import datetime
import email.utils
import hashlib
import json
import shutil
import threading
import time

import pytest
from botocore.exceptions import ClientError

import keyscan
from conftest import det_bytes, make_s3

pytestmark = pytest.mark.strata_only(reason="inspects the server's data directory and keys")


def wait_for(pred, timeout: float, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def records(srv, bucket: str, key: str) -> list[dict]:
    return [e["record"] for e in srv.admin_json("--json", "destruction", "show", bucket, key)]


def master(srv) -> bytes:
    return (srv.data_dir / "master.key").read_bytes()


def new_shards(srv, before: dict) -> dict[str, bytes]:
    return {n: p.read_bytes() for n, p in keyscan.shard_files(srv.data_dir).items() if n not in before}


def report(srv) -> dict:
    return srv.admin_json("--json", "keys", "report")


def code(e: ClientError) -> str:
    return e.response["Error"]["Code"]


# ---- crypto-shredding: nothing that unwraps the key survives ------------------------------------
def test_key_scan_after_destruction(fresh_server, tmp_path):
    srv = fresh_server
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    s3.create_bucket(Bucket="scan")
    s3.put_object(Bucket="scan", Key="keeper", Body=b"stays")
    _, deks_before = keyscan.live_keys(srv.data_dir, [master(srv)])
    shards_before = keyscan.shard_files(srv.data_dir)
    # Above the inline threshold: its shards are what the scan reads (inline bodies: test_inline.py).
    secret = det_bytes("victim", 40_000)
    s3.put_object(Bucket="scan", Key="victim", Body=secret)

    # The victim's key and shards, as the attacker finds them.
    keks, deks = keyscan.live_keys(srv.data_dir, [master(srv)])
    (dek_id,) = set(deks) - set(deks_before)
    dek = deks[dek_id]
    (slot,) = [e for e in keyscan.slots(srv.data_dir / "keys" / "slots") if e["id"] == dek_id]
    wrapped = slot["wrapped"]
    saved = new_shards(srv, shards_before)
    blob = next(iter(saved)).split(".")[0]
    nonce, body, aad = keyscan.chunk_ciphertext(saved, blob, 0)
    # Positive control: with the key the shards decrypt (the scan below can find what it seeks).
    assert keyscan.decrypts(dek, nonce, body, aad) == secret
    needles = {"raw DEK": dek, "wrapped DEK": wrapped, "wrapped DEK body": wrapped[13:]}
    # RocksDB holds slot references only, never key material, even while the key lives.
    assert keyscan.find_everywhere([srv.data_dir / "meta"], needles) == []
    before = tmp_path / "backup-before"
    srv.admin_json("backup", str(before))
    assert keyscan.find_everywhere([before], needles), "a backup must carry the key store"

    s3.delete_object(Bucket="scan", Key="victim")
    recs = wait_for(lambda: records(srv, "scan", "victim"), 30)
    assert len(recs) == 1 and recs[0]["key_id"] == f"dek:{dek_id}", recs
    after = tmp_path / "backup-after"
    srv.admin_json("backup", str(after))

    # After the destruction no byte of the key, raw or wrapped, is anywhere under the data
    # directory (RocksDB files and WAL, key store, disks) nor in a backup taken since.
    hits = keyscan.find_everywhere([srv.data_dir, after], needles)
    assert hits == [], hits
    # Nothing the system holds decrypts the shards (kept aside here; the server removed them).
    _, deks_now = keyscan.live_keys(srv.data_dir, [master(srv)])
    _, deks_backup = keyscan.live_keys(after, [master(srv)])
    assert dek_id not in deks_now and dek_id not in deks_backup
    for k in list(deks_now.values()) + list(deks_backup.values()) + list(keks.values()):
        assert keyscan.decrypts(k, nonce, body, aad) is None
    assert not any(n.startswith(blob) for n in keyscan.shard_files(srv.data_dir)), "shards left"
    # The only copy left is in the backup taken before: it lives until that backup is deleted.
    assert keyscan.find_everywhere([before], needles)
    assert s3.get_object(Bucket="scan", Key="keeper")["Body"].read() == b"stays"


# ---- one record per destroyed version, none for what is not a destruction -----------------------
def test_each_destruction_reason_writes_exactly_one_record(make_server, tmp_path):
    srv = make_server(extra_args=["--lifecycle-day-secs", "2"])
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)

    # user request: a version by id (versioned) and an unversioned delete, one via DeleteObjects
    s3.create_bucket(Bucket="ver")
    s3.put_bucket_versioning(Bucket="ver", VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket="ver", Key="doc", Body=b"one")["VersionId"]
    s3.put_object(Bucket="ver", Key="doc", Body=b"two")
    s3.delete_object(Bucket="ver", Key="doc", VersionId=v1)
    s3.delete_object(Bucket="ver", Key="doc")  # a delete marker: destroys nothing
    s3.create_bucket(Bucket="plain")
    s3.put_object(Bucket="plain", Key="a", Body=b"A" * 100)
    s3.put_object(Bucket="plain", Key="b", Body=b"B")
    s3.delete_objects(Bucket="plain", Delete={"Objects": [{"Key": "a"}, {"Key": "b"}]})
    # not destructions of a version: an overwrite, an aborted upload, a refused body
    s3.put_object(Bucket="plain", Key="c", Body=b"old")
    s3.put_object(Bucket="plain", Key="c", Body=b"new")
    up = s3.create_multipart_upload(Bucket="plain", Key="mp")["UploadId"]
    s3.upload_part(Bucket="plain", Key="mp", UploadId=up, PartNumber=1, Body=b"p" * 1000)
    s3.abort_multipart_upload(Bucket="plain", Key="mp", UploadId=up)
    with pytest.raises(ClientError):
        s3.put_object(Bucket="plain", Key="bad", Body=b"x", ContentMD5="AAAAAAAAAAAAAAAAAAAAAA==")

    # bucket purge
    s3.create_bucket(Bucket="gone")
    for i in range(3):
        s3.put_object(Bucket="gone", Key=f"k{i}", Body=f"g{i}".encode())
    kek_gone = next(k["id"] for k in report(srv)["bucket_keys"] if k["bucket"] == "gone")
    out = srv.admin_json("--json", "bucket", "purge", "gone")
    assert out["closing"]["reason"]["kind"] == "bucket_purge"

    # account closure: read-only in the grace period, restorable, then destroyed
    carol = srv.admin_json("user", "add", "carol")
    c3 = make_s3(srv.endpoint, carol["access_key"], carol["secret_key"])
    c3.create_bucket(Bucket="carols")
    c3.put_object(Bucket="carols", Key="diary", Body=b"dear diary")
    out = srv.admin_json("--json", "user", "remove", "carol", "--purge", "--grace-days", "3")
    assert out["buckets"] == ["carols"]
    assert c3.get_object(Bucket="carols", Key="diary")["Body"].read() == b"dear diary"
    with pytest.raises(ClientError) as e:
        c3.put_object(Bucket="carols", Key="more", Body=b"x")
    assert code(e.value) == "AccessDenied"
    srv.admin_json("--json", "user", "restore", "carol")
    c3.put_object(Bucket="carols", Key="more", Body=b"x")
    srv.admin_json("--json", "user", "remove", "carol", "--purge", "--grace-days", "1")
    time.sleep(0.5)
    assert c3.get_object(Bucket="carols", Key="diary")["Body"].read() == b"dear diary"

    def settled():
        names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
        return "gone" not in names and "carols" not in names
    assert wait_for(settled, 30), s3.list_buckets()["Buckets"]
    assert wait_for(lambda: len(records(srv, "carols", "more")) == 1, 30)
    users = [u["user"] for u in srv.admin_json("user", "list")]
    assert "carol" not in users

    expected = {
        ("ver", "doc"): ("user_request", 1),
        ("plain", "a"): ("user_request", 1),
        ("plain", "b"): ("user_request", 1),
        ("plain", "c"): (None, 0),
        ("plain", "mp"): (None, 0),
        ("plain", "bad"): (None, 0),
        ("gone", "k0"): ("bucket_purge", 1),
        ("gone", "k1"): ("bucket_purge", 1),
        ("gone", "k2"): ("bucket_purge", 1),
        ("carols", "diary"): ("account_closure", 1),
        ("carols", "more"): ("account_closure", 1),
    }
    admin_id = None
    for (b, k), (reason, n) in expected.items():
        recs = wait_for(lambda: records(srv, b, k) if n else [], 10) if n else records(srv, b, k)
        assert len(recs) == n, (b, k, recs)
        for r in recs:
            assert r["reason"]["kind"] == reason
            # Every object here is small, hence inline: no shards to remove (a chunked
            # version's record counts k + m per chunk: test_key_scan_after_destruction).
            assert r["key_id"].startswith("dek:") and r["shards_removed"] == 0
            # The key's fate is verified; an inline body has no chunk to re-read.
            assert "absent on re-read" in r["verification"] and r["verification"].endswith("; no chunks")
            assert r["destroyed_ms"] >= r["written_ms"]
            if reason == "user_request":
                assert r["actor"]["access_key"] == srv.access_key and r["actor"]["user"]
                assert r["reason"]["request_id"]
                admin_id = r["actor"]["user"]
            else:
                assert r["actor"]["engine"] in ("purge", "account-closure")
    assert records(srv, "ver", "doc")[0]["version_id"] == v1
    a = records(srv, "plain", "a")[0]
    assert a["size"] == 100 and a["etag"] == hashlib.md5(b"A" * 100).hexdigest()
    assert records(srv, "gone", "k0")[0]["actor"]["user"] == admin_id
    # one record per op id, over everything
    out = tmp_path / "export"
    srv.admin_json("--json", "destruction", "export", str(out))
    assert out.is_dir()
    # A third party verifies the export offline with the log's public key alone...
    pub = tmp_path / "log.pub.pem"
    pem = srv.admin("destruction", "public-key", "--data-dir", str(srv.data_dir), offline=True)
    assert pem.returncode == 0, pem.stderr
    pub.write_text(pem.stdout)
    ok = srv.admin("destruction", "verify", str(out), "--public-key", str(pub), offline=True)
    assert ok.returncode == 0 and ok.stdout.startswith("OK: "), ok.stdout + ok.stderr
    # ... and one altered byte of a real record fails it, naming that record.
    recs = out / "records.jsonl"
    lines = recs.read_text().splitlines(keepends=True)
    assert len(lines) >= 5
    lines[1] = lines[1].replace('"size":100,', '"size":101,', 1) if '"size":100,' in lines[1] \
        else lines[1].replace('"storage_class":"STANDARD"', '"storage_class":"STANDARX"', 1)
    recs.write_text("".join(lines))
    bad = srv.admin("destruction", "verify", str(out), "--public-key", str(pub), offline=True)
    assert bad.returncode == 1 and "record 1 (records.jsonl line 2): altered" in bad.stdout, bad.stdout

    # Keys: what was not recorded was still destroyed; the purged bucket's KEK too.
    r = wait_for(lambda: (lambda r: r if r["data_keys"]["live"] == 2 else None)(report(srv)), 20)
    assert r, report(srv)["data_keys"]  # live: ver/doc (v2) and plain/c (new)
    kek = wait_for(lambda: next((k for k in report(srv)["bucket_keys"]
                                 if k["id"] == kek_gone and k["state"] == "destroyed"), None), 20)
    assert kek and kek["destroyed_ms"], report(srv)["bucket_keys"]


# ---- kill -9 during destruction, rotation and purge --------------------------------------------
def test_kill9_during_destruction_redoes_and_records_once(fresh_server):
    srv = fresh_server
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    s3.create_bucket(Bucket="crash")
    n = 150
    for i in range(n):
        s3.put_object(Bucket="crash", Key=f"o{i:03}", Body=det_bytes(i, 700))
    s3.delete_objects(Bucket="crash", Delete={"Objects": [{"Key": f"o{i:03}"} for i in range(n)],
                                              "Quiet": True})
    # Kill as soon as the first records appear: the GC is in the middle of the batch.
    assert wait_for(lambda: any(records(srv, "crash", f"o{i:03}") for i in range(3)), 30, 0.01)
    srv.kill9()
    dead_records = sum(bool(records_offline(srv, f"o{i:03}")) for i in range(n))
    srv.start()
    for i in range(n):
        recs = wait_for(lambda: records(srv, "crash", f"o{i:03}"), 60)
        assert len(recs) == 1, (i, recs)
    assert wait_for(lambda: report(srv)["data_keys"]["live"] == 0, 30), report(srv)["data_keys"]
    assert not keyscan.shard_files(srv.data_dir)
    assert 0 < dead_records < n, f"the kill did not land mid-way ({dead_records} of {n} recorded)"


def records_offline(srv, key: str) -> bool:
    """Whether the (stopped) server's log names this key: the raw log files hold the record."""
    needle = f'"key":"{key}"'.encode()
    return any(needle in p.read_bytes() for p in (srv.data_dir / "destruction-log").rglob("*")
               if p.is_file())


def _fill(s3, buckets: int, per: int) -> dict:
    data = {}
    for b in range(buckets):
        name = f"rot-{b:02}"
        s3.create_bucket(Bucket=name)
        for i in range(per):
            body = det_bytes(f"{name}/{i}", 500 + i)
            s3.put_object(Bucket=name, Key=f"k{i}", Body=body)
            data[(name, f"k{i}")] = body
    return data


def _all_readable(s3, data: dict) -> None:
    for (b, k), body in data.items():
        assert s3.get_object(Bucket=b, Key=k)["Body"].read() == body, (b, k)


def test_master_rotation_survives_kill9_and_destroys_the_old_key(fresh_server):
    srv = fresh_server
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    bob = srv.admin_json("user", "add", "bob")
    data = _fill(s3, 24, 2)
    old = master(srv)
    assert len(keyscan.live_keys(srv.data_dir, [old])[0]) == 24
    srv.admin_json("--json", "key", "rotate-master", "--rate", "8", "--no-wait")

    def progress():
        q = report(srv)["rotations"]["queued"]
        return q and q[0]["phase"] == "rewrap" and q[0]["rewrapped"] >= 4
    assert wait_for(progress, 30), report(srv)["rotations"]
    srv.kill9()
    srv.start()
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    _all_readable(s3, data)  # mid-rotation: half the KEKs under each master
    r = wait_for(lambda: (lambda r: r if not r["rotations"]["queued"] else None)(report(srv)), 60)
    assert r, report(srv)["rotations"]
    new = master(srv)
    assert new != old and not (srv.data_dir / "master.key.next").exists()
    # The old master key is gone from the data directory; every KEK is under the new one.
    assert keyscan.find_everywhere([srv.data_dir], {"old master": old}) == []
    assert keyscan.live_keys(srv.data_dir, [old])[0] == {}
    assert len(keyscan.live_keys(srv.data_dir, [new])[0]) == 24
    states = {m["state"] for m in r["master_keys"]}
    assert states == {"current", "destroyed"}, r["master_keys"]
    assert r["rotations"]["finished"][-1]["resealed"] >= 2
    _all_readable(s3, data)
    b3 = make_s3(srv.endpoint, bob["access_key"], bob["secret_key"])
    b3.create_bucket(Bucket="bobs")  # access-key secrets were re-sealed


def test_rotation_under_load_fails_no_request(fresh_server):
    srv = fresh_server
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    data = _fill(s3, 6, 3)
    errors: list[str] = []
    stop = threading.Event()
    done = [0]

    def load(t: int):
        c = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
        i = 0
        while not stop.is_set():
            b = f"rot-{(t + i) % 6:02}"
            key = f"load-{t}-{i}"
            body = det_bytes(key, 300)
            try:
                c.put_object(Bucket=b, Key=key, Body=body)
                assert c.get_object(Bucket=b, Key=key)["Body"].read() == body
                assert c.get_object(Bucket=b, Key="k0")["Body"].read() == data[(b, "k0")]
                if i % 3 == 0:
                    up = c.create_multipart_upload(Bucket=b, Key=key + "-mp")["UploadId"]
                    c.upload_part(Bucket=b, Key=key + "-mp", UploadId=up, PartNumber=1, Body=body)
                    c.abort_multipart_upload(Bucket=b, Key=key + "-mp", UploadId=up)
                done[0] += 1
            except Exception as e:  # every failure counts
                errors.append(f"{key}: {e!r}")
            i += 1

    threads = [threading.Thread(target=load, args=(t,)) for t in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        r = srv.admin("key", "rotate-master", "--rate", "4", timeout=120)
        assert r.returncode == 0, r.stderr
        assert "rotation finished" in r.stdout
        for b in ("rot-00", "rot-01"):
            r = srv.admin("key", "rotate-bucket", b, "--rate", "20", timeout=120)
            assert r.returncode == 0, r.stderr
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert errors == [], errors[:5]
    assert done[0] > 10
    rep = report(srv)
    for b in ("rot-00", "rot-01"):
        keks = [k for k in rep["bucket_keys"] if k["bucket"] == b]
        assert {k["state"] for k in keks} >= {"current"}
        assert any(k.get("rotated_ms") for k in keks), keks
    _all_readable(s3, data)


def test_bucket_rotation_survives_kill9(fresh_server):
    srv = fresh_server
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    s3.create_bucket(Bucket="rbk")
    data = {}
    for i in range(40):
        data[("rbk", f"k{i}")] = det_bytes(f"rb{i}", 200)
        s3.put_object(Bucket="rbk", Key=f"k{i}", Body=data[("rbk", f"k{i}")])
    old_kek = next(k["id"] for k in report(srv)["bucket_keys"] if k["bucket"] == "rbk")
    srv.admin_json("--json", "key", "rotate-bucket", "rbk", "--rate", "10", "--no-wait")
    assert wait_for(lambda: (lambda q: q and q[0]["rewrapped"] >= 5)(report(srv)["rotations"]["queued"]), 30)
    srv.kill9()
    srv.start()
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    _all_readable(s3, data)
    assert wait_for(lambda: not report(srv)["rotations"]["queued"], 60)
    _all_readable(s3, data)
    keks, deks = keyscan.live_keys(srv.data_dir, [master(srv)])
    assert len(deks) == 40
    # The old KEK is retired to the GC and destroyed after the grace period.
    assert wait_for(lambda: old_kek not in keyscan.live_keys(srv.data_dir, [master(srv)])[0], 20)
    entries = keyscan.slots(srv.data_dir / "keys" / "slots")
    assert not any(e["wrapper"] == old_kek for e in entries)


def test_purge_respects_object_lock_and_survives_kill9(fresh_server):
    srv = fresh_server
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    s3.create_bucket(Bucket="purged", ObjectLockEnabledForBucket=True)
    n = 60
    for i in range(n):
        s3.put_object(Bucket="purged", Key=f"o{i}", Body=det_bytes(i, 400))
    import datetime as dt
    until = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=12)
    locked = s3.put_object(Bucket="purged", Key="locked", Body=b"L", ObjectLockMode="COMPLIANCE",
                           ObjectLockRetainUntilDate=until)["VersionId"]
    srv.admin_json("--json", "bucket", "purge", "purged")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="purged", Key="new", Body=b"x")
    assert code(e.value) == "AccessDenied"
    assert wait_for(lambda: any(records(srv, "purged", f"o{i}") for i in range(3)), 30, 0.01)
    srv.kill9()
    srv.start()
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    for i in range(n):
        recs = wait_for(lambda: records(srv, "purged", f"o{i}"), 60)
        assert len(recs) == 1 and recs[0]["reason"]["kind"] == "bucket_purge", (i, recs)
    # The locked version waits for its retention to end; the bucket with it.
    assert records(srv, "purged", "locked") == []
    assert s3.get_object(Bucket="purged", Key="locked", VersionId=locked)["Body"].read() == b"L"
    assert wait_for(lambda: len(records(srv, "purged", "locked")) == 1, 40)
    assert wait_for(lambda: "purged" not in [b["Name"] for b in s3.list_buckets()["Buckets"]], 20)


# ---- inventory and retention ---------------------------------------------------------------------
def test_keys_report_json_and_table(fresh_server):
    srv = fresh_server
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    s3.create_bucket(Bucket="inv")
    s3.put_object(Bucket="inv", Key="a", Body=b"a")
    r = report(srv)
    (m,) = r["master_keys"]
    assert m["state"] == "current" and len(m["id"]) == 32 and m["protects"]["bucket_keys"] == 1
    (k,) = [k for k in r["bucket_keys"] if k["bucket"] == "inv"]
    assert k["state"] == "current" and k["protects"]["data_keys"] == 1 and k["created_ms"]
    assert r["data_keys"]["live"] == 1
    text = srv.admin("keys", "report")
    assert text.returncode == 0, text.stderr
    assert "KIND" in text.stdout and k["id"] in text.stdout and "bucket inv: 1 data key(s)" in text.stdout
    # Never key material: the master key's bytes appear in no answer.
    assert master(srv).hex() not in json.dumps(r) and master(srv).hex() not in text.stdout


def test_retention_presets_write_lifecycle_and_default_lock(fresh_server):
    srv = fresh_server
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    presets = {p["preset"]: p["days"] for p in srv.admin_json("--json", "retention", "presets")}
    assert presets == {"login-records": 90, "advertising-records": 180, "fraud-records": 365,
                       "consumer-disputes": 1095, "contracts-payments": 1825}
    s3.create_bucket(Bucket="logs")
    out = srv.admin_json("--json", "retention", "apply", "logs", "login-records", "--prefix", "auth/")
    assert "<Days>90</Days>" in out["lifecycle_xml"] and "<Prefix>auth/</Prefix>" in out["lifecycle_xml"]
    rule_id = out["rules"][0]["id"]
    assert rule_id.startswith("strata-retention-login-records-")
    # The lifecycle engine runs it: the bucket's configuration shows it, and an object under the
    # prefix is told when it expires and by which rule (created + 90 days, next midnight UTC).
    rules = s3.get_bucket_lifecycle_configuration(Bucket="logs")["Rules"]
    assert [(r["ID"], r["Filter"], r["Expiration"], r["NoncurrentVersionExpiration"]) for r in rules] == \
        [(rule_id, {"Prefix": "auth/"}, {"Days": 90}, {"NoncurrentDays": 90})]
    put = s3.put_object(Bucket="logs", Key="auth/2026-12-02.log", Body=b"login")
    assert f'rule-id="{rule_id}"' in put["Expiration"], put
    created = s3.head_object(Bucket="logs", Key="auth/2026-12-02.log")
    assert f'rule-id="{rule_id}"' in created["Expiration"]
    due = email.utils.parsedate_to_datetime(created["Expiration"].split('"')[1])
    start = created["LastModified"].replace(hour=0, minute=0, second=0, microsecond=0)
    assert due == start + datetime.timedelta(days=91), (due, created["LastModified"])
    assert "Expiration" not in s3.put_object(Bucket="logs", Key="other/x", Body=b"x")
    # The owner cannot remove or shadow the operator's rule: PUT keeps it beside the owner's
    # rules, DELETE removes only the owner's, a reserved id is refused.
    mine = {"ID": "mine", "Filter": {"Prefix": "tmp/"}, "Status": "Enabled", "Expiration": {"Days": 1}}
    s3.put_bucket_lifecycle_configuration(Bucket="logs", LifecycleConfiguration={"Rules": [mine]})
    ids = [r["ID"] for r in s3.get_bucket_lifecycle_configuration(Bucket="logs")["Rules"]]
    assert ids == ["mine", rule_id]
    s3.delete_bucket_lifecycle(Bucket="logs")
    ids = [r["ID"] for r in s3.get_bucket_lifecycle_configuration(Bucket="logs")["Rules"]]
    assert ids == [rule_id]
    forged = dict(mine, ID=rule_id)
    with pytest.raises(ClientError) as e:
        s3.put_bucket_lifecycle_configuration(Bucket="logs", LifecycleConfiguration={"Rules": [forged]})
    assert code(e.value) == "InvalidArgument"
    r = srv.admin("retention", "apply", "logs", "nope")
    assert r.returncode != 0 and "unknown retention preset" in r.stderr
    r = srv.admin("retention", "apply", "logs", "fraud-records", "--lock", "COMPLIANCE")
    assert r.returncode != 0 and "Object Lock" in r.stderr
    s3.create_bucket(Bucket="contracts", ObjectLockEnabledForBucket=True)
    out = srv.admin_json("--json", "retention", "apply", "contracts", "contracts-payments",
                         "--lock", "GOVERNANCE")
    assert "<NoncurrentDays>1</NoncurrentDays>" in out["lifecycle_xml"]
    cfg = s3.get_object_lock_configuration(Bucket="contracts")["ObjectLockConfiguration"]
    assert cfg["Rule"]["DefaultRetention"] == {"Mode": "GOVERNANCE", "Days": 1825}


def test_restore_keeps_destroyed_keys_destroyed(fresh_server, tmp_path):
    """Restoring an older metadata backup never brings back a key destroyed since: the data
    directory's key store (newer) is kept, and keys nothing references are destroyed."""
    srv = fresh_server
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    s3.create_bucket(Bucket="rst")
    s3.put_object(Bucket="rst", Key="kept", Body=b"kept")
    s3.put_object(Bucket="rst", Key="doomed", Body=b"doomed")
    backup = tmp_path / "b"
    srv.admin_json("backup", str(backup))
    s3.delete_object(Bucket="rst", Key="doomed")
    assert wait_for(lambda: records(srv, "rst", "doomed"), 30)
    s3.put_object(Bucket="rst", Key="later", Body=b"later")  # after the backup: lost with it
    srv.stop()
    shutil.rmtree(srv.data_dir / "meta")
    r = srv.admin("--json", "restore", str(backup), "--data-dir", str(srv.data_dir), offline=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["unreferenced_keys_destroyed"] == 1  # `later`'s key
    srv.start()
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    assert s3.get_object(Bucket="rst", Key="kept")["Body"].read() == b"kept"
    with pytest.raises(ClientError):
        s3.get_object(Bucket="rst", Key="doomed")["Body"].read()
    _, deks = keyscan.live_keys(srv.data_dir, [master(srv)])
    assert len(deks) == 1
