"""Versioned layouts: restarting with other disks, k, m or chunk size never makes existing objects
unreadable (each segment is read under the layout it was written with), new data goes to the new
layout, and the background rebalance moves old data over, after which the old shards are gone."""

from __future__ import annotations

import time

import pytest

from conftest import det_bytes, make_s3
from s3util import md5_etag

pytestmark = pytest.mark.strata_only(reason="restarts the server with other placement flags")

MiB = 1024 * 1024
NO_REBALANCE = ["--rebalance-rate", "0"]


def _write_set(s3, bucket: str, tag: str) -> dict[str, bytes]:
    """A one-chunk object (above the 16 KiB inline threshold), a multi-chunk object, a multipart
    object and an inline one (in its version record: no segment to rebalance); returns key -> bytes."""
    objs = {
        f"{tag}/small": det_bytes(f"{tag}-small", 100 * 1024),
        f"{tag}/inline": det_bytes(f"{tag}-inline", 100),
        f"{tag}/chunks": det_bytes(f"{tag}-chunks", 5 * MiB + 123),
    }
    for k, v in objs.items():
        r = s3.put_object(Bucket=bucket, Key=k, Body=v)
        assert r["ETag"] == md5_etag(v)
    key = f"{tag}/multipart"
    parts = [det_bytes(f"{tag}-p1", 5 * MiB), det_bytes(f"{tag}-p2", 5 * MiB), det_bytes(f"{tag}-p3", 1000)]
    up = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    done = []
    for n, p in enumerate(parts, 1):
        e = s3.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=n, Body=p)["ETag"]
        done.append({"PartNumber": n, "ETag": e})
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up,
                                 MultipartUpload={"Parts": done})
    objs[key] = b"".join(parts)
    return objs


def _check_all(s3, bucket: str, objs: dict[str, bytes]) -> None:
    for k, v in objs.items():
        got = s3.get_object(Bucket=bucket, Key=k)["Body"].read()
        assert got == v, f"{k}: {len(got)} bytes read, {len(v)} written"
        # A range across a chunk boundary, too.
        if len(v) > MiB + 10:
            r = s3.get_object(Bucket=bucket, Key=k, Range=f"bytes={MiB - 5}-{MiB + 5}")["Body"].read()
            assert r == v[MiB - 5:MiB + 6], k


def _restart(srv, *flags: str):
    srv.stop()
    srv.extra_args = list(srv.DEFAULT_ARGS) + list(flags)
    srv.start()
    return make_s3(srv.endpoint, srv.access_key, srv.secret_key)


def _shard_files(srv) -> int:
    return sum(1 for p in (srv.data_dir / "disks").rglob("*") if p.is_file() and "shards" in p.parts)


def _worker(srv, name: str) -> dict:
    return {w["name"]: w for w in srv.admin_json("worker", "list")}[name]


def test_restart_with_other_geometry_keeps_everything_readable(make_server):
    srv = make_server(extra_args=NO_REBALANCE)
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    s3.create_bucket(Bucket="layouts")
    written = _write_set(s3, "layouts", "six")  # 6 disks, RS(4,2), 4 MiB chunks

    s3 = _restart(srv, "--disks", "7", *NO_REBALANCE)
    _check_all(s3, "layouts", written)
    written |= _write_set(s3, "layouts", "seven")  # 7 disks, RS(4,2)
    assert any((srv.data_dir / "disks" / "disk6" / "shards").rglob("*.*")), "the 7th disk got no shards"

    s3 = _restart(srv, "--disks", "8", "--data-shards", "5", "--parity-shards", "3",
                  "--chunk-size", str(MiB), *NO_REBALANCE)
    _check_all(s3, "layouts", written)
    written |= _write_set(s3, "layouts", "eight")  # 8 disks, RS(5,3), 1 MiB chunks
    _check_all(s3, "layouts", written)
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket="layouts")["Contents"]) == sorted(written)

    # Now let the rebalance move everything to the current layout (8 disks, RS(5,3), 1 MiB).
    s3 = _restart(srv, "--disks", "8", "--data-shards", "5", "--parity-shards", "3",
                  "--chunk-size", str(MiB), "--rebalance-rate", "512")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        w = _worker(srv, "rebalance")
        if w["status"]["clean_for_layout"] == w["status"]["current_layout"]:
            break
        time.sleep(0.5)
    w = _worker(srv, "rebalance")
    assert w["status"]["clean_for_layout"] == w["status"]["current_layout"], w
    # Two object sets were on old layouts: 3 chunked objects each, the multipart one with 3
    # segments (the inline objects have none).
    assert w["status"]["segments_moved"] == 2 * (1 + 1 + 3), w
    _check_all(s3, "layouts", written)

    # Every chunk now has exactly 8 shards (5 + 3) under the current layout, and the old layouts'
    # shards were collected after the grace period: count chunks of 1 MiB.
    chunks_per_set = 1 + 6 + (5 + 5 + 1)  # small, 5 MiB + 123 B, parts of 5 MiB, 5 MiB, 1000 B
    expected = 3 * chunks_per_set * 8
    deadline = time.monotonic() + 60
    while _shard_files(srv) != expected and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _shard_files(srv) == expected, f"{_shard_files(srv)} shard files, expected {expected}"

    # And it keeps working after yet another restart.
    s3 = _restart(srv, "--disks", "8", "--data-shards", "5", "--parity-shards", "3",
                  "--chunk-size", str(MiB))
    _check_all(s3, "layouts", written)


def test_invalid_geometry_is_refused_at_start(make_server):
    srv = make_server()
    srv.stop()
    srv.extra_args = list(srv.DEFAULT_ARGS) + ["--disks", "4"]  # RS(4,2) needs 6 disks
    with pytest.raises(Exception):
        srv.start()
