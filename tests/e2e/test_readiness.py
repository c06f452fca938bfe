"""`/_strata/ready` (issue 16, availability): ready while the metadata tier answers, 503 with the
reason while it does not, ready again when it is back; `/_strata/health` (liveness) stays 200.
The metadata tier here is a real etcd member this test stops and restarts."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import pytest

import harness
from harness import Server

pytestmark = pytest.mark.strata_only("strata's own probe")


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _wait(url: str, status: int, within: float) -> str:
    deadline = time.monotonic() + within
    while True:
        code, body = _get(url)
        if code == status:
            return body
        assert time.monotonic() < deadline, f"{url} answered {code} {body!r}, wanted {status}"
        time.sleep(0.3)


def test_ready_follows_the_metadata_tier_health_stays_up(tmp_path):
    etcd = harness.Etcd(tmp_path / "etcd")
    srv = None
    try:
        srv = Server(tmp_path / "srv", "ready")
        args = srv.extra_args
        if "--meta" in args:
            i = args.index("--meta")
            del args[i:i + 2]
        srv.extra_args = args + ["--meta", etcd.url("ready-test/")]
        srv.start()
        assert _get(srv.endpoint + "/_strata/ready") == (200, "ready\n")

        etcd.stop()
        body = _wait(srv.endpoint + "/_strata/ready", 503, within=15)
        assert body.startswith("not ready: metadata tier"), body
        assert _get(srv.endpoint + "/_strata/health")[0] == 200, "liveness must not follow etcd"

        etcd.restart()
        _wait(srv.endpoint + "/_strata/ready", 200, within=30)
    finally:
        if srv is not None:
            srv.kill9()
        etcd.stop()
