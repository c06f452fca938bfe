"""Small objects inline in their version record (issue 15): no shard files, every read and copy
path, SSE-C, kill -9, destruction (crypto-shredding of the record's copies), the archive tier.

The durability order of an inline PUT (key store synced, then the WAL write and sync, then the
200) is checked from the syscalls in test_durability.py."""

from __future__ import annotations

import hashlib
import json
import time

import pytest
from botocore.exceptions import ClientError

import keyscan
from conftest import Clients, det_bytes, make_s3

pytestmark = pytest.mark.strata_only(reason="inspects the server's data directory")

KiB = 1024


def shards(srv) -> set[str]:
    return set(keyscan.shard_files(srv.data_dir))


def wait_for(pred, timeout: float, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def code(fn) -> str:
    with pytest.raises(ClientError) as ei:
        fn()
    return ei.value.response["Error"]["Code"]


def test_small_object_is_inline_and_every_read_path_works(fresh_server, tmp_path):
    srv = fresh_server
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    s3.create_bucket(Bucket="inl")
    data = det_bytes("inline-4k", 4 * KiB)
    before = shards(srv)
    r = s3.put_object(Bucket="inl", Key="small", Body=data, ChecksumAlgorithm="CRC32")
    assert r["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert shards(srv) == before, "a 4 KiB object must not write shard files"
    g = s3.get_object(Bucket="inl", Key="small", ChecksumMode="ENABLED")
    assert g["Body"].read() == data and g["ChecksumCRC32"] == r["ChecksumCRC32"]
    assert s3.head_object(Bucket="inl", Key="small")["ContentLength"] == len(data)
    for rng, want in (("bytes=0-0", data[:1]), ("bytes=100-199", data[100:200]),
                      ("bytes=-10", data[-10:]), ("bytes=4000-", data[4000:]),
                      ("bytes=4095-9999", data[4095:])):
        g = s3.get_object(Bucket="inl", Key="small", Range=rng)
        assert g["Body"].read() == want, rng
        assert g["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert code(lambda: s3.get_object(Bucket="inl", Key="small", Range="bytes=5000-")) == "InvalidRange"
    g = s3.get_object(Bucket="inl", Key="small", PartNumber=1)
    assert g["Body"].read() == data
    # CopyObject of an inline source (the copy is inline too, under its own key)
    s3.copy_object(Bucket="inl", Key="copy", CopySource={"Bucket": "inl", "Key": "small"})
    assert s3.get_object(Bucket="inl", Key="copy")["Body"].read() == data
    # UploadPartCopy with a range of an inline source: the part goes to chunks
    up = s3.create_multipart_upload(Bucket="inl", Key="mp")["UploadId"]
    big = det_bytes("inline-part1", 5 * 1024 * KiB)
    p1 = s3.upload_part(Bucket="inl", Key="mp", UploadId=up, PartNumber=1, Body=big)
    p2 = s3.upload_part_copy(Bucket="inl", Key="mp", UploadId=up, PartNumber=2,
                             CopySource={"Bucket": "inl", "Key": "small"}, CopySourceRange="bytes=10-1033")
    s3.complete_multipart_upload(Bucket="inl", Key="mp", UploadId=up, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": p1["ETag"]}, {"PartNumber": 2, "ETag": p2["CopyPartResult"]["ETag"]}]})
    assert s3.get_object(Bucket="inl", Key="mp")["Body"].read() == big + data[10:1034]
    # A large object still goes to chunks; an empty one has nothing to store.
    n = len(shards(srv))
    s3.put_object(Bucket="inl", Key="large", Body=det_bytes("inline-large", 100 * KiB))
    assert len(shards(srv)) > n
    s3.put_object(Bucket="inl", Key="empty", Body=b"")
    assert s3.get_object(Bucket="inl", Key="empty")["Body"].read() == b""

    # The AWS CLI: cp up and down, a ranged get-object.
    cli = Clients(srv, tmp_path / "home")
    src = tmp_path / "f.bin"
    src.write_bytes(data)
    n = len(shards(srv))
    cli.aws("s3", "cp", str(src), "s3://inl/cli.bin")
    assert len(shards(srv)) == n
    out = tmp_path / "back.bin"
    cli.aws("s3", "cp", "s3://inl/cli.bin", str(out))
    assert out.read_bytes() == data
    part = tmp_path / "part.bin"
    r = cli.aws("s3api", "get-object", "--bucket", "inl", "--key", "cli.bin", "--range", "bytes=7-70", str(part))
    assert part.read_bytes() == data[7:71] and json.loads(r.stdout)["ContentRange"] == "bytes 7-70/4096"

    # Survives kill -9 right after the 200, and a restart keeps it inline.
    s3.put_object(Bucket="inl", Key="last", Body=data[::-1])
    srv.kill9()
    srv.start()
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    for k, want in (("small", data), ("copy", data), ("cli.bin", data), ("last", data[::-1])):
        assert s3.get_object(Bucket="inl", Key=k)["Body"].read() == want, k


def test_threshold_knob_and_sse_c(make_server):
    srv = make_server(extra_args=["--inline-threshold", "0", "--allow-sse-c-over-http"])
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    s3.create_bucket(Bucket="knob")
    before = shards(srv)
    s3.put_object(Bucket="knob", Key="a", Body=b"x" * 100)
    assert len(shards(srv)) > len(before), "--inline-threshold 0 keeps every object in chunks"

    srv2 = make_server(extra_args=["--inline-threshold", "1000", "--allow-sse-c-over-http"])
    s3 = make_s3(srv2.endpoint, srv2.access_key, srv2.secret_key)
    s3.create_bucket(Bucket="knob")
    before = shards(srv2)
    s3.put_object(Bucket="knob", Key="at", Body=b"y" * 1000)
    assert shards(srv2) == before, "1000 bytes: at the threshold, inline"
    s3.put_object(Bucket="knob", Key="above", Body=b"y" * 1001)
    assert len(shards(srv2)) > len(before), "1001 bytes: above the threshold, chunks"
    # SSE-C: the customer key binds the inline body's key as it binds chunks'.
    key, other = bytes(range(32)), bytes(range(1, 33))
    data = det_bytes("ssec-inline", 900)
    n = len(shards(srv2))
    s3.put_object(Bucket="knob", Key="c", Body=data, SSECustomerAlgorithm="AES256", SSECustomerKey=key)
    assert len(shards(srv2)) == n
    g = s3.get_object(Bucket="knob", Key="c", SSECustomerAlgorithm="AES256", SSECustomerKey=key,
                      Range="bytes=1-8")
    assert g["Body"].read() == data[1:9]
    for k in (other,):
        with pytest.raises(ClientError) as ei:
            s3.get_object(Bucket="knob", Key="c", SSECustomerAlgorithm="AES256", SSECustomerKey=k)
        assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert code(lambda: s3.get_object(Bucket="knob", Key="c")) == "InvalidRequest"
    for k in ("at", "above"):
        assert s3.get_object(Bucket="knob", Key=k)["Body"].read() == b"y" * (1000 if k == "at" else 1001)


def test_destroyed_inline_version_is_unreadable_and_recorded(fresh_server):
    srv = fresh_server
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    s3.create_bucket(Bucket="shred")
    s3.put_bucket_versioning(Bucket="shred", VersioningConfiguration={"Status": "Enabled"})
    master = (srv.data_dir / "master.key").read_bytes()
    _, deks_before = keyscan.live_keys(srv.data_dir, [master])
    secret = det_bytes("inline-victim", 3000)
    before = shards(srv)
    vid = s3.put_object(Bucket="shred", Key="victim", Body=secret)["VersionId"]
    assert shards(srv) == before
    _, deks = keyscan.live_keys(srv.data_dir, [master])
    (dek_id,) = set(deks) - set(deks_before)
    dek = deks[dek_id]
    # The sealed body as found raw in the metadata files (the WAL keeps it after the delete too).
    bodies = keyscan.inline_bodies([srv.data_dir / "meta"])
    opened = [keyscan.decrypts(dek, n, b, aad) for n, b, aad in bodies]
    assert secret in opened, "positive control: the record's sealed body opens with its DEK"
    assert keyscan.find_everywhere([srv.data_dir], {"plaintext": secret[:64]}) == []

    s3.delete_object(Bucket="shred", Key="victim", VersionId=vid)
    recs = wait_for(lambda: [e["record"] for e in srv.admin_json(
        "--json", "destruction", "show", "shred", "victim")], 30)
    assert len(recs) == 1 and recs[0]["key_id"] == f"dek:{dek_id}", recs
    assert code(lambda: s3.get_object(Bucket="shred", Key="victim", VersionId=vid)) == "NoSuchVersion"
    # Whatever copies of the record are left in RocksDB's files, nothing the system holds opens
    # them: the DEK is gone from everywhere (raw or wrapped).
    left = keyscan.inline_bodies([srv.data_dir / "meta"])
    _, deks_now = keyscan.live_keys(srv.data_dir, [master])
    assert dek_id not in deks_now
    for n, b, aad in left:
        for k in deks_now.values():
            assert keyscan.decrypts(k, n, b, aad) != secret
    assert keyscan.find_everywhere([srv.data_dir], {"raw DEK": dek}) == []


def test_inline_object_to_glacier_and_restored(make_server):
    srv = make_server(extra_args=["--lifecycle-day-secs", "1", "--restore-expedited-secs", "1",
                                  "--archive-chunk-size", "65536"])
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    s3.create_bucket(Bucket="cold")
    s3.put_bucket_lifecycle_configuration(
        Bucket="cold", TransitionDefaultMinimumObjectSize="varies_by_storage_class",
        LifecycleConfiguration={"Rules": [{"ID": "g", "Status": "Enabled", "Filter": {"Prefix": ""},
                                           "Transitions": [{"Days": 1, "StorageClass": "GLACIER"}]}]})
    data = det_bytes("inline-cold", 4 * KiB)
    s3.put_object(Bucket="cold", Key="a", Body=data)
    assert wait_for(lambda: s3.head_object(Bucket="cold", Key="a").get("StorageClass") == "GLACIER", 15)
    st = lambda: srv.admin_json("archive", "status", "--json")
    assert wait_for(lambda: st()["repack_queue"] == 0 and sum(c["extents"] for c in st()["containers"]) >= 1,
                    20), st()
    assert code(lambda: s3.get_object(Bucket="cold", Key="a")) == "InvalidObjectState"
    s3.restore_object(Bucket="cold", Key="a", RestoreRequest={
        "Days": 1, "GlacierJobParameters": {"Tier": "Expedited"}})
    done = lambda: 'ongoing-request="false"' in s3.head_object(Bucket="cold", Key="a").get("Restore", "")
    assert wait_for(done, 20)
    assert s3.get_object(Bucket="cold", Key="a")["Body"].read() == data
    assert s3.get_object(Bucket="cold", Key="a", Range="bytes=5-9")["Body"].read() == data[5:10]
