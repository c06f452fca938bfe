"""Garbage collection never deletes data that is still being read, and collects what no version
references: chunks of overwritten or deleted versions (after the grace period), and chunks of an
upload whose client went away (promptly, without a restart)."""

from __future__ import annotations

import hashlib
import socket
import time
import urllib.parse

import pytest

from conftest import det_bytes, make_s3

pytestmark = pytest.mark.strata_only(reason="inspects the server's data directory")


def _shard_files(srv) -> int:
    return sum(1 for p in (srv.data_dir / "disks").rglob("*") if p.is_file() and "shards" in p.parts)


def _wait_for(pred, timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def test_inflight_get_survives_overwrite_and_delete(fresh_server):
    """A slow GET of a large object keeps streaming the version it started with, byte-exact,
    while the object is overwritten and then deleted, and the GC runs with a grace period far
    shorter than the read (1 s here): the read pins its data. Once it ends, the data goes."""
    srv = fresh_server
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    s3.create_bucket(Bucket="inflight")
    original = det_bytes("inflight-original", 40 * 1024 * 1024)  # 10 chunks of 4 MiB
    s3.put_object(Bucket="inflight", Key="big", Body=original)
    baseline_with_big = _shard_files(srv)

    body = s3.get_object(Bucket="inflight", Key="big")["Body"]
    h = hashlib.sha256()
    h.update(body.read(1024 * 1024))

    # Overwrite, then delete, while the GET is only 1 MiB in.
    s3.put_object(Bucket="inflight", Key="big", Body=det_bytes("inflight-new", 5 * 1024 * 1024))
    s3.delete_object(Bucket="inflight", Key="big")
    # Give the GC several grace periods to (wrongly) delete the chunks under the reader.
    time.sleep(4)

    got = 1024 * 1024
    while True:
        piece = body.read(1024 * 1024)
        if not piece:
            break
        h.update(piece)
        got += len(piece)
        time.sleep(0.02)  # a slow reader
    assert got == len(original), f"read {got} of {len(original)} bytes"
    assert h.hexdigest() == hashlib.sha256(original).hexdigest(), "the in-flight GET saw other bytes"
    body.close()

    # With the reader gone, both versions' chunks are collected.
    assert _wait_for(lambda: _shard_files(srv) == 0, 30), (
        f"{_shard_files(srv)} shard files left (had {baseline_with_big} with the object)")


def _signed_put_socket(srv, bucket: str, key: str, total: int) -> socket.socket:
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = f"{srv.endpoint}/{bucket}/{key}"
    req = AWSRequest(method="PUT", url=url, headers={
        "Content-Length": str(total), "x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
    S3SigV4Auth(Credentials(srv.access_key, srv.secret_key), "s3", "us-east-1").add_auth(req)
    host = urllib.parse.urlparse(srv.endpoint)
    sock = socket.create_connection((host.hostname, host.port), timeout=30)
    head = f"PUT /{bucket}/{key} HTTP/1.1\r\nHost: {host.netloc}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in req.headers.items() if k.lower() != "host")
    sock.sendall((head + "\r\n").encode())
    return sock


def test_client_disconnect_mid_upload_is_collected_without_restart(fresh_server):
    """A client that sends part of a PUT body and closes the connection leaves chunks on disk
    that no version will ever reference; the server hands them to the GC as soon as the request
    is dropped (not only at the next start's intent sweep)."""
    srv = fresh_server
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    s3.create_bucket(Bucket="gone")
    s3.put_object(Bucket="gone", Key="kept", Body=b"stays")
    baseline = _shard_files(srv)

    sock = _signed_put_socket(srv, "gone", "half", 64 * 1024 * 1024)
    block = det_bytes("gone", 1024 * 1024)
    for _ in range(20):  # 20 of 64 MiB: several 4 MiB chunks are stored by now
        sock.sendall(block)
    assert _wait_for(lambda: _shard_files(srv) >= baseline + 6 * 3, 30), "the partial upload wrote no chunks"
    sock.close()

    assert _wait_for(lambda: _shard_files(srv) == baseline, 30), (
        f"{_shard_files(srv) - baseline} shard files of the abandoned upload were not collected")
    assert srv.alive(), "the server must not restart to collect them"
    assert s3.get_object(Bucket="gone", Key="kept")["Body"].read() == b"stays"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="gone")["Contents"]] == ["kept"]
    # Nothing waits in the intent table any more: the discard cleared the intent.
    workers = {w["name"]: w for w in srv.admin_json("worker", "list")}
    assert workers["gc"]["status"]["items_done"] >= 1
