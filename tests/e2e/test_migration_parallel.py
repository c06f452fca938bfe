"""Parallel listing of an import (docs/migration.md, "Parallel listing"): the source's keys are
split into ranges listed concurrently, each with its own persisted cursor, so a kill -9 of the
destination mid-listing resumes every range where it was, listing and copying nothing again.

Two real Strata servers on 127.0.0.1 and a proxy in front of the source that holds each listing
page for a moment and counts how many are in flight at once. Small objects, small pages
(`--list-page`) and a bandwidth limit keep it to seconds.
"""

from __future__ import annotations

import threading
import time
from urllib.parse import parse_qs, unquote, urlsplit

import http.server
import pytest

from conftest import det_bytes
from harness import IS_MOTO
from test_migration import s3_of, start, status, wait_state
from test_migration_more import _Proxy

pytestmark = pytest.mark.skipif(IS_MOTO, reason="migration jobs are a strata admin feature")


class _SlowListings(_Proxy):
    """Holds every ListObjectsV2 page (not the one-key probes of the split) for 0.2 s and
    records the peak number of pages in flight."""

    stats: dict

    def do_GET(self):
        q = parse_qs(urlsplit(self.path).query)
        page = q.get("list-type") == ["2"] and q.get("max-keys") != ["1"]
        st = self.stats
        if page:
            with st["lock"]:
                st["now"] += 1
                st["peak"] = max(st["peak"], st["now"])
            time.sleep(0.2)
        try:
            self._forward("GET")
        finally:
            if page:
                with st["lock"]:
                    st["now"] -= 1


def range_of(ranges, key):
    """The index of the range holding `key`: after < key <= through."""
    for i, r in enumerate(ranges):
        if (r["after"] is None or key > r["after"]) and (r["through"] is None or key <= r["through"]):
            return i
    raise AssertionError(f"no range holds {key!r}")


def test_parallel_listing_resumes_every_range_after_kill9(make_server):
    src, dst = make_server(), make_server()
    s, d = s3_of(src), s3_of(dst)
    s.create_bucket(Bucket="src")
    d.create_bucket(Bucket="dst")
    # versioned destination: a second copy of anything would show as a second version
    d.put_bucket_versioning(Bucket="dst", VersioningConfiguration={"Status": "Enabled"})
    keys = [f"p{p}/{j:03d}" for p in range(8) for j in range(20)]  # many prefixes
    keys += [f"flat-{i:03d}" for i in range(60)]  # and a flat part
    keys += ["ünï/ключ", "p3/"]
    size = 1024
    for i, k in enumerate(keys):
        s.put_object(Bucket="src", Key=k, Body=det_bytes(i, size))
    n = len(keys)

    seen: list = []
    stats = {"lock": threading.Lock(), "now": 0, "peak": 0}
    handler = type("P", (_SlowListings,), {"upstream": ("127.0.0.1", src.port), "seen": seen,
                                           "stats": stats})
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{proxy.server_address[1]}"
        # 10 keys a page; 222 KiB at 40 KiB/s: about five seconds, room to crash mid-listing
        start(dst, src, "wide", "src", "dst", "--concurrency=4", "--list-page=10",
              "--bandwidth=40KiB", endpoint=endpoint)
        deadline = time.monotonic() + 30
        while True:
            st = status(dst, "wide")
            if st["objects_copied"] >= 60:
                break
            assert st["state"] in ("INITIALIZED", "STARTED"), st
            assert time.monotonic() < deadline, st
            time.sleep(0.1)
        before = status(dst, "wide")
        dst.kill9()
        ranges = before["ranges"]
        assert len(ranges) >= 4, ranges
        assert before["ranges_done"] < len(ranges), "killed after the listing ended"
        assert stats["peak"] >= 2, f"listings never overlapped: {stats}"
        mark = len(seen)
        dst.start()
        st = wait_state(dst, "wide", {"DONE", "ERROR"})
    finally:
        proxy.shutdown()
    assert st["state"] == "DONE", st
    assert (st["objects_listed"], st["objects_copied"], st["objects_failed"],
            st["objects_skipped"]) == (n, n, 0, 0), st
    assert st["ranges_done"] == len(st["ranges"]) == len(ranges)

    # Resumed at each range's cursor: after the restart no listing starts before a cursor the
    # job had recorded, and no key at or before it is read again.
    after_restart = seen[mark:]
    for method, path, _ in after_restart:
        u = urlsplit(path)
        q = parse_qs(u.query)
        if q.get("list-type") == ["2"]:
            assert q.get("max-keys") != ["1"], "split again after the restart"
            sa = q.get("start-after", [None])[0]
            if sa is None:
                i = 0
            else:
                i = range_of(ranges, sa)
                if sa == ranges[i]["through"]:
                    # the end of range i, or the start of the next one (when i was done)
                    if not ranges[i]["done"]:
                        continue
                    i += 1
            cursor = ranges[i]["cursor"]
            assert cursor is None or (sa is not None and sa >= cursor), \
                f"range {i} listed again before its cursor {cursor!r}: {path}"
        else:
            parts = u.path.split("/", 2)
            if len(parts) < 3 or not parts[2]:
                continue
            key = unquote(parts[2])
            r = ranges[range_of(ranges, key)]
            assert r["cursor"] is None or key > r["cursor"], f"{key!r} read again after the restart"

    versions = []
    for page in d.get_paginator("list_object_versions").paginate(Bucket="dst"):
        versions += page.get("Versions", [])
        assert not page.get("DeleteMarkers")
    assert sorted(v["Key"] for v in versions) == sorted(keys)  # every object exactly once
    for i, k in enumerate(keys):
        assert d.get_object(Bucket="dst", Key=k)["Body"].read() == det_bytes(i, size), k
