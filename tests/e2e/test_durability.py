"""Durability order (issue 9): what a 200 promises must be on stable storage before the 200 is sent.

kill -9 keeps the page cache, so test_crash.py stays green with every fsync removed. This test
watches the syscalls instead: the real server runs under strace, real clients make one mutating
request at a time, and for every acknowledged request the log must show (see syscalls.py and
docs/testing.md, "Durability order"):

  - each file that lands under shards/ was written under tmp/, fsynced after its last write and
    before its rename; its directory fsynced after the rename; a directory created under shards/
    had its parent fsynced;
  - then the metadata commit: a write to the RocksDB WAL (meta/*.log) after all of the above,
    followed by a WAL fsync/fdatasync, all before the response.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

import syscalls
from conftest import det_bytes, make_s3, require_tool
from s3util import md5_etag, multipart_etag
from test_chunked import put_signed_streaming

pytestmark = pytest.mark.strata_only(reason="traces the strata process's syscalls")

STRACE_OPTS = ["-f", "-tt", "-yy", "-qq", "-s", "256", "--seccomp-bpf", "-e", "signal=none",
               "-e", f"trace={syscalls.TRACED}"]
MiB = 1 << 20


@dataclass
class Op:
    label: str
    method: str
    path: str         # request path without the query
    status: int       # what the client got
    min_renames: int  # shard files this request must publish (0: metadata-only request)
    new_key: bool = False  # stores a new data key: key store synced before the commit
    inline: bool = False   # a small object kept in its record: must publish no shard file


class Driver:
    """Makes one request at a time and records what it expects to find in the trace."""

    def __init__(self):
        self.ops: list[Op] = []

    def record(self, label: str, method: str, path: str, status: int, min_renames: int = 0,
               new_key: bool = False, inline: bool = False):
        assert 200 <= status < 300, f"{label}: HTTP {status}"
        self.ops.append(Op(label, method, path, status, min_renames, new_key, inline))


def _status(resp: dict) -> int:
    return resp["ResponseMetadata"]["HTTPStatusCode"]


def _drive(srv, bucket: str) -> tuple[Driver, dict[str, bytes]]:
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    d = Driver()
    kept: dict[str, bytes] = {}
    b = f"/{bucket}"
    d.record("CreateBucket", "PUT", b, _status(s3.create_bucket(Bucket=bucket)))

    # tiny and inline: below the inline threshold, kept in the version record (no shard files);
    # their durability is the key store's sync, then the WAL's.
    for key, size, renames in (("tiny", 1, 0), ("inline", 4096, 0), ("small", 300_000, 1),
                               ("big", 9 * MiB, 1)):
        data = det_bytes(f"dura-{key}", size)
        r = s3.put_object(Bucket=bucket, Key=key, Body=data)
        assert r["ETag"] == md5_etag(data)
        d.record(f"PutObject {key} ({size} B)", "PUT", f"{b}/{key}", _status(r), renames,
                 new_key=True, inline=renames == 0)
        kept[key] = data

    parts = [det_bytes("dura-mp1", 5 * MiB), det_bytes("dura-mp2", MiB + 7)]
    r = s3.create_multipart_upload(Bucket=bucket, Key="mp")
    d.record("CreateMultipartUpload", "POST", f"{b}/mp", _status(r))
    upload_id, done = r["UploadId"], []
    for n, part in enumerate(parts, 1):
        r = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=n, Body=part)
        d.record(f"UploadPart {n}", "PUT", f"{b}/mp", _status(r), 1)
        done.append({"PartNumber": n, "ETag": r["ETag"]})
    r = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload_id,
                                     MultipartUpload={"Parts": done})
    assert r["ETag"] == multipart_etag(parts)
    d.record("CompleteMultipartUpload", "POST", f"{b}/mp", _status(r))
    kept["mp"] = b"".join(parts)

    data = det_bytes("dura-chunked", 200_000)
    status, headers, body = put_signed_streaming(srv, bucket, "chunked", data)
    assert status == 200, body[:300]
    d.record("PutObject aws-chunked (signed streaming)", "PUT", f"{b}/chunked", status, 1,
             new_key=True)
    kept["chunked"] = data

    # Every object version has its own data key, so a copy re-encrypts: new shards.
    r = s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "small"})
    d.record("CopyObject", "PUT", f"{b}/copy", _status(r), 1, new_key=True)
    kept["copy"] = kept["small"]

    # Deletes last: the garbage collector they wake up commits too, and must not do so inside the
    # window of a request whose own commit is being checked.
    r = s3.delete_object(Bucket=bucket, Key="tiny")
    d.record("DeleteObject", "DELETE", f"{b}/tiny", _status(r))
    del kept["tiny"]
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "big"}]})
    assert not r.get("Errors"), r
    d.record("DeleteObjects", "POST", b, _status(r))
    del kept["big"]
    return d, kept


def _match(trace: syscalls.Trace, ops: list[Op]) -> list[tuple[Op, syscalls.Exchange]]:
    """Pairs the recorded requests with the exchanges found in the trace, in order."""
    exs = trace.exchanges
    lines = "\n".join(f"  {e.request_line!r} -> {e.status}" for e in exs)
    assert len(exs) == len(ops), (
        f"the trace shows {len(exs)} HTTP exchanges, the test made {len(ops)}:\n{lines}")
    pairs = []
    for op, ex in zip(ops, exs):
        line = ex.request_line
        assert re.match(rf"{re.escape(op.method)} {re.escape(op.path)}[ ?]", line), (
            f"{op.label}: expected a request for {op.method} {op.path}, the trace has {line!r}")
        assert ex.response is not None, f"{op.label}: no response found in the trace"
        assert ex.status == op.status, f"{op.label}: trace shows status {ex.status}, client got {op.status}"
        pairs.append((op, ex))
    return pairs


def test_acknowledged_writes_are_durable_in_order(make_server):
    strace = require_tool("strace")
    srv = make_server(command_prefix=[strace, *STRACE_OPTS, "-o", "{workdir}/strace.log"])
    trace_path = srv.workdir / "strace.log"

    bucket = f"dura-{uuid.uuid4().hex[:16]}"
    driver, kept = _drive(srv, bucket)
    # Stopping the server ends strace too, which flushes the log.
    srv.stop()
    assert trace_path.exists(), f"strace wrote no log at {trace_path}"
    text = trace_path.read_text("utf-8", "replace")
    trace = syscalls.Trace(text, str(srv.data_dir), cwd=str(Path.cwd()), port=srv.port)
    assert not syscalls.unsupported(trace), syscalls.unsupported(trace)

    pairs = _match(trace, driver.ops)
    self_syncing = syscalls.self_syncing_paths(trace)
    problems: list[str] = []
    published: set[str] = set()
    for op, ex in pairs:
        v = syscalls.check_exchange(trace, ex, op.label, min_renames=op.min_renames,
                                    self_syncing=self_syncing)
        problems += v.problems
        published.update(v.published)
        if op.new_key:
            problems += syscalls.check_new_key(trace, ex, op.label, self_syncing=self_syncing)
        if op.inline and v.published:
            problems.append(f"{op.label}: NOT INLINE: published shard files {v.published}")

    # Every shard file on disk now was published, and checked, inside an acknowledged request.
    for rel in syscalls.shard_files(trace.data_dir):
        if rel not in published:
            problems.append(f"UNACCOUNTED: {rel} is on disk but was not renamed into place during "
                            "an acknowledged request (written another way, or the trace missed it)")
    assert not problems, (f"{len(problems)} durability problem(s) ({syscalls.summary(problems)}); "
                          f"trace: {trace_path}\n" + "\n".join(problems[:40]))

    # And the data is what was written (read back without tracing).
    srv.command_prefix = []
    srv.start()
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    for key, data_ in kept.items():
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data_, key
