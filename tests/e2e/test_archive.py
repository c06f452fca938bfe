"""Archive tier and RestoreObject (issue 10), in the day-scaled mode: transitions to GLACIER and
DEEP_ARCHIVE, InvalidObjectState until a restore, the restore sequence 202 / 409 / 200 with its
x-amz-restore headers (boto3 and the AWS CLI), the restored copy's expiry, repacking into sealed
containers that survive a restart and a scrub, kill -9 during a restore, and space reclaimed by
compaction after versions in a container are destroyed."""

from __future__ import annotations

import json
import time

import pytest
from botocore.exceptions import ClientError

import conftest
from conftest import Clients, det_bytes, make_s3, unique_bucket

pytestmark = pytest.mark.strata_only(reason="the scaled lifecycle day and the data directory are strata's")

ARGS = ["--lifecycle-day-secs", "1", "--restore-standard-secs", "2", "--restore-expedited-secs", "1",
        "--restore-bulk-secs", "3", "--archive-chunk-size", "65536"]


def wait_for(pred, timeout: float, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def err(fn) -> tuple[str, int]:
    with pytest.raises(ClientError) as ei:
        fn()
    r = ei.value.response
    return r["Error"]["Code"], r["ResponseMetadata"]["HTTPStatusCode"]


def shard_files(srv) -> int:
    return sum(1 for p in (srv.data_dir / "disks").rglob("*") if p.is_file() and "shards" in p.parts)


def archive_status(srv) -> dict:
    return srv.admin_json("archive", "status", "--json")


def repacked(srv, n: int) -> bool:
    st = archive_status(srv)
    return st["repack_queue"] == 0 and sum(c["extents"] for c in st["containers"]) >= n


@pytest.fixture(scope="module")
def asrv(tmp_path_factory):
    # The Standard tier takes 6 s here: long enough for a loaded machine to see it running.
    args = [("6" if prev == "--restore-standard-secs" else a) for prev, a in zip([None] + ARGS, ARGS)]
    s = conftest._start(tmp_path_factory.mktemp("archive"), "archive", extra_args=args)
    yield s
    conftest._finish(s)


@pytest.fixture(scope="module")
def as3(asrv):
    return make_s3(asrv.endpoint, asrv.access_key, asrv.secret_key)


def test_transition_then_restore_sequence_and_expiry(as3, asrv, tmp_path):
    s3 = as3
    b = unique_bucket("gl")
    s3.create_bucket(Bucket=b)
    s3.put_bucket_lifecycle_configuration(
        Bucket=b, TransitionDefaultMinimumObjectSize="varies_by_storage_class",
        LifecycleConfiguration={"Rules": [
            {"ID": "cold", "Status": "Enabled", "Filter": {"Prefix": "cold/"},
             "Transitions": [{"Days": 1, "StorageClass": "GLACIER"}]},
            {"ID": "ia", "Status": "Enabled", "Filter": {"Prefix": "ia/"},
             "Transitions": [{"Days": 30, "StorageClass": "STANDARD_IA"}]},
        ]})
    data = det_bytes("cold", 200_000)  # 4 archive chunks of 64 KiB
    s3.put_object(Bucket=b, Key="cold/a", Body=data)
    s3.put_object(Bucket=b, Key="warm/a", Body=b"warm")
    assert s3.get_object(Bucket=b, Key="cold/a")["Body"].read() == data  # before its day
    assert wait_for(lambda: s3.head_object(Bucket=b, Key="cold/a").get("StorageClass") == "GLACIER", 8)
    assert "StorageClass" not in s3.head_object(Bucket=b, Key="warm/a")
    assert err(lambda: s3.get_object(Bucket=b, Key="cold/a")) == ("InvalidObjectState", 403)
    listed = {o["Key"]: o["StorageClass"] for o in s3.list_objects_v2(Bucket=b)["Contents"]}
    assert listed == {"cold/a": "GLACIER", "warm/a": "STANDARD"}
    listed = {o["Key"]: o["StorageClass"] for o in s3.list_objects(Bucket=b)["Contents"]}
    assert listed["cold/a"] == "GLACIER"
    assert {v["Key"]: v["StorageClass"] for v in s3.list_object_versions(Bucket=b)["Versions"]}["cold/a"] == "GLACIER"
    # copying from it is refused as well; tagging works
    assert err(lambda: s3.copy_object(Bucket=b, Key="copy", CopySource={"Bucket": b, "Key": "cold/a"})) \
        == ("InvalidObjectState", 403)
    s3.put_object_tagging(Bucket=b, Key="cold/a", Tagging={"TagSet": [{"Key": "t", "Value": "1"}]})
    assert s3.get_object_tagging(Bucket=b, Key="cold/a")["TagSet"] == [{"Key": "t", "Value": "1"}]
    assert wait_for(lambda: repacked(asrv, 1), 10), archive_status(asrv)
    st = asrv.admin_json("lifecycle", "status", b, "--json")["rules"][f"{b}/cold"]
    assert st["transitioned"] == 1 and st["bytes_transitioned"] == len(data)

    # RestoreObject with the AWS CLI: 202, then 409 while it runs
    cli = Clients(asrv, tmp_path / "home")
    req = json.dumps({"Days": 1, "GlacierJobParameters": {"Tier": "Standard"}})
    r = cli.aws("s3api", "restore-object", "--bucket", b, "--key", "cold/a", "--restore-request", req)
    assert r.returncode == 0
    assert s3.head_object(Bucket=b, Key="cold/a")["Restore"] == 'ongoing-request="true"'
    assert err(lambda: s3.restore_object(Bucket=b, Key="cold/a", RestoreRequest={"Days": 1})) \
        == ("RestoreAlreadyInProgress", 409)
    assert err(lambda: s3.get_object(Bucket=b, Key="cold/a")) == ("InvalidObjectState", 403)
    head = json.loads(cli.aws("s3api", "head-object", "--bucket", b, "--key", "cold/a").stdout)
    assert head["Restore"].startswith("ongoing-request="), head
    done = lambda: 'ongoing-request="false"' in s3.head_object(Bucket=b, Key="cold/a").get("Restore", "")
    assert wait_for(done, 15)
    restore = s3.head_object(Bucket=b, Key="cold/a")["Restore"]
    assert "expiry-date=" in restore and "GMT" in restore, restore
    assert s3.get_object(Bucket=b, Key="cold/a")["Body"].read() == data
    assert s3.head_object(Bucket=b, Key="cold/a")["StorageClass"] == "GLACIER"  # still archived
    # restored already: 200, expiry extended from now
    r = s3.restore_object(Bucket=b, Key="cold/a", RestoreRequest={"Days": 2})
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    # the copy expires (2 scaled days), the version stays archived
    assert wait_for(lambda: "Restore" not in s3.head_object(Bucket=b, Key="cold/a"), 8)
    assert err(lambda: s3.get_object(Bucket=b, Key="cold/a")) == ("InvalidObjectState", 403)
    # a new restore of the same version works again (202)
    r = s3.restore_object(Bucket=b, Key="cold/a", RestoreRequest={
        "Days": 1, "GlacierJobParameters": {"Tier": "Expedited"}})
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert wait_for(done, 8)
    assert s3.get_object(Bucket=b, Key="cold/a")["Body"].read() == data
    # a STANDARD object cannot be restored
    assert err(lambda: s3.restore_object(Bucket=b, Key="warm/a", RestoreRequest={"Days": 1})) \
        == ("InvalidObjectState", 403)
    # DELETE works on an archived object
    s3.delete_object(Bucket=b, Key="cold/a")
    assert err(lambda: s3.head_object(Bucket=b, Key="cold/a"))[1] == 404


def test_archive_classes_by_put_copy_multipart(as3, asrv):
    s3 = as3
    b = unique_bucket("cls")
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="deep", Body=b"deep data", StorageClass="DEEP_ARCHIVE")
    assert s3.head_object(Bucket=b, Key="deep")["StorageClass"] == "DEEP_ARCHIVE"
    assert err(lambda: s3.get_object(Bucket=b, Key="deep")) == ("InvalidObjectState", 403)
    # DEEP_ARCHIVE has no Expedited tier
    assert err(lambda: s3.restore_object(Bucket=b, Key="deep", RestoreRequest={
        "Days": 1, "GlacierJobParameters": {"Tier": "Expedited"}}))[1] == 400
    # readable classes are stored as named
    s3.put_object(Bucket=b, Key="ir", Body=b"ir", StorageClass="GLACIER_IR")
    assert s3.head_object(Bucket=b, Key="ir")["StorageClass"] == "GLACIER_IR"
    assert s3.get_object(Bucket=b, Key="ir")["Body"].read() == b"ir"
    # CopyObject onto itself with a new storage class archives it
    s3.put_object(Bucket=b, Key="self", Body=b"self")
    s3.copy_object(Bucket=b, Key="self", CopySource={"Bucket": b, "Key": "self"}, StorageClass="GLACIER")
    assert s3.head_object(Bucket=b, Key="self")["StorageClass"] == "GLACIER"
    assert err(lambda: s3.get_object(Bucket=b, Key="self")) == ("InvalidObjectState", 403)
    # multipart: the class is reported by ListMultipartUploads and ListParts, and kept
    up = s3.create_multipart_upload(Bucket=b, Key="mp", StorageClass="GLACIER")["UploadId"]
    part = s3.upload_part(Bucket=b, Key="mp", UploadId=up, PartNumber=1, Body=b"m" * 1000)
    assert s3.list_multipart_uploads(Bucket=b)["Uploads"][0]["StorageClass"] == "GLACIER"
    assert s3.list_parts(Bucket=b, Key="mp", UploadId=up)["StorageClass"] == "GLACIER"
    s3.complete_multipart_upload(Bucket=b, Key="mp", UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    assert s3.head_object(Bucket=b, Key="mp")["StorageClass"] == "GLACIER"
    assert wait_for(lambda: repacked(asrv, 3), 10), archive_status(asrv)
    s3.restore_object(Bucket=b, Key="mp", RestoreRequest={"Days": 1, "GlacierJobParameters": {"Tier": "Bulk"}})
    assert wait_for(lambda: 'ongoing-request="false"' in s3.head_object(Bucket=b, Key="mp").get("Restore", ""), 10)
    assert s3.get_object(Bucket=b, Key="mp")["Body"].read() == b"m" * 1000
    # unknown classes are refused
    assert err(lambda: s3.put_object(Bucket=b, Key="x", Body=b"x", StorageClass="NOPE"))[0] == "InvalidStorageClass"


def test_archived_objects_survive_restart_scrub_and_kill9_during_restore(make_server):
    srv = make_server(extra_args=ARGS)
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    b = "survive"
    s3.create_bucket(Bucket=b)
    blobs = {f"o{i}": det_bytes(f"s{i}", 70_000 + i) for i in range(4)}
    for k, v in blobs.items():
        s3.put_object(Bucket=b, Key=k, Body=v, StorageClass="GLACIER")
    assert wait_for(lambda: repacked(srv, 4), 10), archive_status(srv)
    st = archive_status(srv)
    archive_chunks = sum(c["chunks"] for c in st["containers"])
    # the four versions share one container's chunks (~280 KB sealed in 64 KiB chunks)
    assert len(st["containers"]) == 1 and 5 <= archive_chunks <= 6, st
    srv.restart()
    scrub = srv.admin_json("scrub")
    # every archive shard is checked under its own (archive) layout, and all are healthy
    assert scrub["chunks_checked"] >= archive_chunks, scrub
    assert scrub["faults"] == [] and scrub["unrecoverable"] == [] and scrub["unknown_layouts"] == [], scrub
    assert scrub["shards_healthy"] == scrub["shards_checked"], scrub
    # a restore requested, then the server is killed before it is done
    r = s3.restore_object(Bucket=b, Key="o1", RestoreRequest={"Days": 3})
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 202
    srv.kill9()
    srv.start()
    assert s3.head_object(Bucket=b, Key="o1")["Restore"] == 'ongoing-request="true"'
    assert wait_for(lambda: 'ongoing-request="false"' in s3.head_object(Bucket=b, Key="o1").get("Restore", ""), 10)
    assert s3.get_object(Bucket=b, Key="o1")["Body"].read() == blobs["o1"]
    # one restored copy, not two (nothing duplicated): a second request extends it (200)
    assert s3.restore_object(Bucket=b, Key="o1", RestoreRequest={"Days": 3})[
        "ResponseMetadata"]["HTTPStatusCode"] == 200
    for k, v in blobs.items():
        if k != "o1":
            assert err(lambda: s3.get_object(Bucket=b, Key=k)) == ("InvalidObjectState", 403)


def test_space_reclaimed_after_destruction_in_containers(make_server):
    srv = make_server(extra_args=ARGS + ["--archive-container-bytes", "300000"])
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    b = "reclaim"
    s3.create_bucket(Bucket=b)
    base = shard_files(srv)
    blobs = {f"r{i}": det_bytes(f"r{i}", 100_000) for i in range(6)}
    for k, v in blobs.items():
        s3.put_object(Bucket=b, Key=k, Body=v, StorageClass="GLACIER")
    assert wait_for(lambda: repacked(srv, 6), 15), archive_status(srv)
    st = archive_status(srv)
    sealed = [c for c in st["containers"] if c["sealed"]]
    assert len(sealed) == 2 and all(c["extents"] == 3 for c in sealed), st  # many objects per container
    # standard chunks were released (GC grace 1 s): only the archive shards remain, each
    # container's three extents (3 x 100,028 sealed bytes) packed into 5 chunks of 64 KiB
    assert all(c["chunks"] == 5 and c["bytes"] == 3 * 100_028 for c in sealed), st
    archived_files = wait_for(lambda: (lambda n: n if n == base + 2 * 5 * 6 else 0)(shard_files(srv)), 10)
    assert archived_files, f"{shard_files(srv)} shard files (expected 2 containers x 5 chunks x 6 shards)"
    for k in ["r0", "r1", "r2", "r3", "r4"]:
        s3.delete_object(Bucket=b, Key=k)
    # compaction: both sealed containers fall below 50% live; the live extent moves, space comes back
    def reclaimed():
        w = [x for x in archive_status(srv)["workers"] if x["name"] == "archive-compaction"][0]["status"]
        return w["reclaimed_bytes"] >= 500_000 and w["containers_retired"] >= 2
    assert wait_for(reclaimed, 15), archive_status(srv)
    assert wait_for(lambda: shard_files(srv) == base + 2 * 6, 10), shard_files(srv)
    s3.restore_object(Bucket=b, Key="r5", RestoreRequest={"Days": 1})
    assert wait_for(lambda: 'ongoing-request="false"' in s3.head_object(Bucket=b, Key="r5").get("Restore", ""), 10)
    assert s3.get_object(Bucket=b, Key="r5")["Body"].read() == blobs["r5"]


def container_files(srv, ids: list[str]) -> int:
    """Shard files of these archive containers (their blob ids), on all disks."""
    prefixes = tuple(ids)
    return sum(1 for p in (srv.data_dir / "disks").rglob("*")
               if p.is_file() and "shards" in p.parts and p.name.startswith(prefixes))


def test_thousand_small_objects_share_chunks_restore_and_compact(make_server):
    """1,000 objects of 4 KiB are packed into about (1,000 x 4 KiB / chunk size) chunks of k+m
    shard files each, not k+m per object; all restore byte-exact (most before, the rest after
    compaction moved their extents); deleting most of them and compacting reclaims the space."""
    from concurrent.futures import ThreadPoolExecutor

    chunk = 256 * 1024
    at = ARGS.index("--archive-chunk-size")
    args = ARGS[:at] + ARGS[at + 2:]
    # A container is compacted only once under 15% of it is live: then at least 85% of it was
    # dead when it was audited, whatever deletes were still in flight (9 in 10 are deleted).
    srv = make_server(extra_args=args + ["--archive-chunk-size", str(chunk),
                                         "--archive-container-bytes", str(1 << 20),
                                         "--archive-compact-below", "0.15"])
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    b = "packed"
    s3.create_bucket(Bucket=b)
    blobs = {f"o{i:04d}": det_bytes(f"p{i}", 4096) for i in range(1000)}
    pool = ThreadPoolExecutor(8)
    list(pool.map(lambda kv: s3.put_object(Bucket=b, Key=kv[0], Body=kv[1], StorageClass="GLACIER"),
                  blobs.items()))
    assert wait_for(lambda: repacked(srv, 1000), 60), archive_status(srv)

    st = archive_status(srv)
    sealed_total = 1000 * (4096 + 28)  # one frame each: 12-byte nonce + 16-byte tag
    written = sum(c["bytes"] for c in st["containers"])
    # each extent once; under load a repack retried after a failed commit may leave a few dead
    # extents in written chunks (counted as container bytes, reclaimed by compaction)
    assert sealed_total <= written <= sealed_total * 1.01, st
    chunks = sum(c["chunks"] for c in st["containers"])
    ideal = -(-written // chunk)  # 16
    # at most one short chunk per container (its last) beyond the ideal
    assert ideal <= chunks <= ideal + len(st["containers"]), (chunks, ideal, st)
    ids = [c["id"] for c in st["containers"]]
    assert container_files(srv, ids) == 6 * chunks  # k + m = 6 shard files per chunk
    # ... instead of 6 per object: the standard-tier copies go through GC
    assert wait_for(lambda: shard_files(srv) == 6 * chunks, 15), (shard_files(srv), 6 * chunks)

    keep = {k for i, k in enumerate(sorted(blobs)) if i % 10 == 0}
    gone = [k for k in sorted(blobs) if k not in keep]
    # the 900 about to be destroyed restore byte-exact from the packed chunks
    list(pool.map(lambda k: s3.restore_object(Bucket=b, Key=k, RestoreRequest={
        "Days": 30, "GlacierJobParameters": {"Tier": "Expedited"}}), gone))
    assert wait_for(lambda: archive_status(srv)["restore_queue"] == 0, 60), archive_status(srv)
    got = dict(pool.map(lambda k: (k, s3.get_object(Bucket=b, Key=k)["Body"].read()), gone))
    assert all(got[k] == blobs[k] for k in gone)

    # destroy them: their extents stay in the sealed containers, dead, until compaction
    for i in range(0, len(gone), 500):
        r = s3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": k} for k in gone[i:i + 500]]})
        assert not r.get("Errors"), r
    assert err(lambda: s3.head_object(Bucket=b, Key=gone[0]))[1] == 404
    sealed = [c for c in st["containers"] if c["sealed"]]
    assert len(sealed) >= 3, st

    def compacted():
        w = [x for x in archive_status(srv)["workers"] if x["name"] == "archive-compaction"][0]["status"]
        return w["containers_retired"] >= len(sealed) and w
    w = wait_for(compacted, 20)
    assert w, archive_status(srv)
    # ~90% of every sealed container was dead: all of it comes back (what was copied out does not)
    assert w["reclaimed_bytes"] >= 0.85 * sum(c["bytes"] for c in sealed), w
    left = archive_status(srv)["containers"]
    assert not {c["id"] for c in sealed} & {c["id"] for c in left}, left
    # their chunks go through GC after the grace period, behind the 900 restored copies
    assert wait_for(lambda: container_files(srv, [c["id"] for c in sealed]) == 0, 30)
    assert container_files(srv, [c["id"] for c in left]) == 6 * sum(c["chunks"] for c in left)

    # the survivors restore byte-exact, most of them from extents compaction moved
    list(pool.map(lambda k: s3.restore_object(Bucket=b, Key=k, RestoreRequest={
        "Days": 30, "GlacierJobParameters": {"Tier": "Expedited"}}), keep))
    assert wait_for(lambda: archive_status(srv)["restore_queue"] == 0, 30), archive_status(srv)
    got = dict(pool.map(lambda k: (k, s3.get_object(Bucket=b, Key=k)["Body"].read()), keep))
    assert all(got[k] == blobs[k] for k in keep)
    pool.shutdown()
