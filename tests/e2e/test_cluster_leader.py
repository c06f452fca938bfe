"""Cluster mode on a shared etcd: singleton work (GC, lifecycle, ...) runs on one elected leader
and moves to another process when the leader is killed, within the process lease's TTL.

Two `strata serve --meta etcd://...` processes on one real etcd (their own member, whatever
STRATA_E2E_META says), each with its own data dir; the second gets the first's master key and
admin keys, since the users live in the shared metadata tier.
"""

from __future__ import annotations

import shutil
import time

import pytest

import harness
from harness import Server

pytestmark = pytest.mark.strata_only("cluster mode is strata's own")

TTL = 3


def _workers(srv: Server) -> dict:
    return {w["name"]: w for w in srv.admin_json("worker", "list")}


def _leading(srv: Server) -> bool:
    return _workers(srv)["leader-election"]["status"]["leader"] is True


def _server(tmp, name: str, url: str) -> Server:
    s = Server(tmp / name, name)
    args = s.extra_args
    if "--meta" in args:  # STRATA_E2E_META=etcd added the shared one: this test has its own
        i = args.index("--meta")
        del args[i:i + 2]
    s.extra_args = args + ["--meta", url, "--lease-ttl", str(TTL)]
    return s


def test_singleton_workers_move_to_the_other_process_when_the_leader_is_killed(tmp_path):
    etcd = harness.Etcd(tmp_path / "etcd")
    a = b = None
    try:
        url = etcd.url("leader-test/")
        a = _server(tmp_path, "a", url)
        a.start()
        deadline = time.monotonic() + 10
        while not _leading(a):
            assert time.monotonic() < deadline, "the only process never became the leader"
            time.sleep(0.2)

        b = _server(tmp_path, "b", url)
        shutil.copy(a.data_dir / "master.key", b.data_dir / "master.key")
        b.access_key, b.secret_key = a.access_key, a.secret_key
        b.start()
        # b stands by: its singleton workers do nothing while a leads.
        time.sleep(1.0)
        wa, wb = _workers(a), _workers(b)
        assert wa["leader-election"]["status"]["leader"] is True
        assert wb["leader-election"]["status"]["leader"] is False
        assert wb["leader-election"]["status"]["leader_is"] == wa["leader-election"]["status"]["me"]
        for name in ("gc", "intent-sweep", "lifecycle"):
            if name in wb:
                assert wb[name]["state"] == "standby", (name, wb[name])
                assert wb[name]["units"] == 0, (name, wb[name])
                assert wa[name]["state"] != "standby", (name, wa[name])
        # Both serve the same metadata: a bucket made through a is listed through b.
        a.admin_json("worker", "list")
        s3a = harness_client(a)
        s3a.create_bucket(Bucket="shared-meta")
        assert "shared-meta" in [x["Name"] for x in harness_client(b).list_buckets()["Buckets"]]

        a.kill9()
        killed = time.monotonic()
        while not _leading(b):
            assert time.monotonic() - killed < TTL + 1.5, "b did not take over within the lease TTL"
            time.sleep(0.1)
        took = time.monotonic() - killed
        print(f"leadership moved {took:.2f}s after kill -9 (lease TTL {TTL}s)")
        deadline = time.monotonic() + 5
        while _workers(b)["gc"]["state"] == "standby":
            assert time.monotonic() < deadline, "b's GC never started"
            time.sleep(0.1)
    finally:
        for s in (b, a):
            if s is not None:
                s.stop()
        etcd.stop()


def harness_client(srv: Server):
    from conftest import make_s3
    return make_s3(srv.endpoint, srv.access_key, srv.secret_key)
