"""/_strata/metrics (docs/metrics.md): who may read it (nobody anonymous by default, a scraper with
the bearer token, operators through the signed `strata admin metrics`); exact counter deltas after
known traffic; the capacity alert threshold in health, gauge and log; readiness with a disk gone;
the alerting rules and the Grafana dashboard only use series a real scrape has."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from conftest import make_s3, require_tool

pytestmark = pytest.mark.strata_only(reason="strata's metrics endpoint")


def get(url: str, token: str | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_metrics_are_closed_to_anonymous_callers_by_default(server):
    status, body = get(server.endpoint + "/_strata/metrics")
    assert status == 401 and "strata_" not in body
    status, _ = get(server.endpoint + "/_strata/metrics", "anything-at-all-123")
    assert status == 401
    signed = server.admin("metrics")
    assert signed.returncode == 0 and "strata_requests_total" in signed.stdout, signed.stderr
    # Health stays open for load balancers.
    assert get(server.endpoint + "/_strata/health")[0] == 200


def test_bearer_token_opens_metrics_for_a_scraper(make_server, tmp_path):
    token = secrets.token_urlsafe(24)
    f = tmp_path / "metrics.token"
    f.write_text(token + "\n")
    srv = make_server(extra_args=["--metrics-token-file", str(f)])
    status, body = get(srv.endpoint + "/_strata/metrics", token)
    assert status == 200 and "strata_requests_total" in body
    for wrong in [token[:-1], token + "x", "", token.upper() if token.upper() != token else token + "Y"]:
        assert get(srv.endpoint + "/_strata/metrics", wrong)[0] == 401, wrong
    assert get(srv.endpoint + "/_strata/metrics")[0] == 401
    assert token not in srv.log_tail(400)


# ---- series after known traffic, capacity alert, readiness with disks, rules and dashboard -------

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "docs" / "alerts" / "strata-rules.yml"
DASHBOARD = ROOT / "docs" / "grafana" / "strata-dashboard.json"
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def scrape(srv) -> dict[str, float]:
    """Every sample of a real scrape: `name{labels}` (labels as rendered) -> value."""
    status, body = get(srv.endpoint + "/_strata/metrics")
    assert status == 200, body
    out = {}
    for line in body.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def names(samples: dict[str, float]) -> set[str]:
    return {k.split("{", 1)[0] for k in samples}


def delta(before: dict, after: dict, key: str) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


def wait_for(pred, within: float, what: str):
    deadline = time.monotonic() + within
    while True:
        v = pred()
        if v:
            return v
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def test_request_series_count_known_traffic_exactly(make_server):
    srv = make_server(extra_args=["--metrics-public", "--capacity-alert-threshold", "1"])
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    s3.create_bucket(Bucket="metrics-traffic")
    n_put, n_get, size = 5, 3, 10_000
    payload = secrets.token_bytes(size)
    before = scrape(srv)
    for i in range(n_put):
        s3.put_object(Bucket="metrics-traffic", Key=f"k{i}", Body=payload)
    for i in range(n_get):
        assert s3.get_object(Bucket="metrics-traffic", Key=f"k{i}")["Body"].read() == payload
    with pytest.raises(ClientError) as ei:
        s3.get_object(Bucket="metrics-traffic", Key="absent")
    assert ei.value.response["Error"]["Code"] == "NoSuchKey"
    after = scrape(srv)

    put, get_ = 'op="REST.PUT.OBJECT"', 'op="REST.GET.OBJECT"'
    assert delta(before, after, f'strata_s3_requests_total{{{put},status="200"}}') == n_put
    assert delta(before, after, f'strata_s3_requests_total{{{get_},status="200"}}') == n_get
    assert delta(before, after, f'strata_s3_requests_total{{{get_},status="404"}}') == 1
    assert delta(before, after, f'strata_s3_errors_total{{{get_},code="NoSuchKey"}}') == 1
    assert not any(k.startswith("strata_s3_errors_total") and put in k for k in after), after
    assert delta(before, after, f"strata_s3_request_duration_seconds_count{{{put}}}") == n_put
    assert delta(before, after, f"strata_s3_request_duration_seconds_count{{{get_}}}") == n_get + 1
    # The histogram is cumulative and its +Inf bucket is its count.
    inf = after[f'strata_s3_request_duration_seconds_bucket{{{get_},le="+Inf"}}']
    assert inf == after[f"strata_s3_request_duration_seconds_count{{{get_}}}"]
    assert after[f'strata_s3_request_duration_seconds_bucket{{{get_},le="0.001"}}'] <= inf
    assert after[f"strata_s3_request_duration_seconds_sum{{{get_}}}"] > 0
    assert delta(before, after, "strata_s3_bytes_received_total") >= n_put * size
    assert delta(before, after, "strata_s3_bytes_sent_total") >= n_get * size
    # Disks, capacity (threshold 1: no alert), process, readiness.
    disks = [k for k in after if k.startswith("strata_disk_total_bytes{")]
    assert len(disks) == 6, disks
    for i in range(6):
        d = f'{{disk="disk{i}"}}'
        assert after[f"strata_disk_total_bytes{d}"] > 0
        assert 0 < after[f"strata_disk_free_bytes{d}"] <= after[f"strata_disk_total_bytes{d}"]
        assert after[f"strata_disk_writable{d}"] == 1
        assert after[f"strata_disk_io_errors_total{d}"] == 0
    assert 0 < after["strata_capacity_used_ratio"] < 1
    assert after["strata_capacity_alert_threshold"] == 1 and after["strata_capacity_alert"] == 0
    assert get(srv.endpoint + "/_strata/health") == (200, "ok\n")
    assert after["strata_ready"] == 1
    assert after["process_resident_memory_bytes"] > 1 << 20
    assert after["process_open_fds"] > 3 and after["process_cpu_seconds_total"] > 0


def test_capacity_alert_threshold_shows_in_health_gauge_and_log_once(make_server):
    # Any disk in use is above 0.01 %: the alert is raised at the first sample.
    srv = make_server(extra_args=["--metrics-public", "--capacity-alert-threshold", "0.0001"])
    status, body = get(srv.endpoint + "/_strata/health")
    assert status == 200, "liveness stays 200 with a capacity alert"
    assert body.startswith("ok\ncapacity alert: disk disk") and "above the 0.0% threshold" in body, body
    m = scrape(srv)
    assert m["strata_capacity_alert"] == 1 and m["strata_capacity_alert_threshold"] == 0.0001
    # Several samples later (one every 5 s) still one WARN line: one per crossing, not per sample.
    wait_for(lambda: _disk_samples(srv) >= 3, 20, "three disk samples")
    log = srv.log_tail(2000)
    assert log.count("capacity above the alert threshold") == 1, log[-3000:]
    assert get(srv.endpoint + "/_strata/ready")[0] == 200, "a capacity alert is not unreadiness"


def _disk_samples(srv) -> int:
    workers = srv.admin_json("worker", "list")
    rows = workers.get("workers", workers) if isinstance(workers, dict) else workers
    for w in rows:
        if w.get("name") == "disk-watch":
            return int(w["status"]["samples"])
    return 0


def test_ready_fails_while_a_disk_of_the_write_layout_is_gone(make_server):
    srv = make_server(extra_args=["--metrics-public"])
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    s3.create_bucket(Bucket="metrics-disks")
    assert get(srv.endpoint + "/_strata/ready") == (200, "ready\n")
    disk = srv.data_dir / "disks" / "disk2"
    away = srv.data_dir / "disks" / "disk2.away"
    disk.rename(away)  # as an unmounted disk: the store never recreates a disk directory
    try:
        body = wait_for(lambda: (lambda r: r[1] if r[0] == 503 else None)(get(srv.endpoint + "/_strata/ready")),
                        15, "ready to answer 503")
        assert body.startswith("not ready: 1 of 6 disks of the write layout unusable") and "disk2" in body, body
        assert get(srv.endpoint + "/_strata/health")[0] == 200
        m = scrape(srv)
        assert m['strata_disk_writable{disk="disk2"}'] == 0 and m["strata_ready"] == 0
        assert m['strata_disk_writable{disk="disk1"}'] == 1
        assert m['strata_disk_io_errors_total{disk="disk2"}'] >= 1
        # What readiness predicts: a chunked write (above the 16 KiB inline threshold) needs
        # every disk of its placement.
        with pytest.raises(ClientError) as ei:
            s3.put_object(Bucket="metrics-disks", Key="k", Body=b"x" * 64 * 1024)
        assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] >= 500
    finally:
        away.rename(disk)
    wait_for(lambda: get(srv.endpoint + "/_strata/ready") == (200, "ready\n"), 15, "ready again")
    s3.put_object(Bucket="metrics-disks", Key="k", Body=b"x" * 64 * 1024)


def _referenced(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, recording-rule names) a PromQL expression uses."""
    no_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    metrics = set(re.findall(r"\b((?:strata|process)_[a-z0-9_]+|up)\b(?![:(])", no_strings))
    recorded = set(re.findall(r"\b(strata:[a-z0-9_:]+)", no_strings))
    return metrics, recorded


def test_alert_rules_and_dashboard_use_only_metrics_a_real_scrape_has(make_server):
    import yaml

    rules = yaml.safe_load(RULES.read_text())
    alerts, records, exprs = set(), set(), []
    for g in rules["groups"]:
        assert g["name"] and g["rules"], g
        for r in g["rules"]:
            assert ("alert" in r) != ("record" in r), r
            exprs.append(r["expr"])
            if "alert" in r:
                alerts.add(r["alert"])
                assert r["labels"]["severity"] in ("warning", "critical"), r
                assert r["annotations"]["summary"], r
            else:
                records.add(r["record"])
    # The alerts issue 16 asks for.
    for a in ["StrataCapacityAboveThreshold", "StrataHighErrorRate", "StrataHighLatencyP99",
              "StrataNotReady", "StrataGcBacklogOld", "StrataRebuildBacklog",
              "StrataDestructionFailures", "StrataAvailabilityBudgetFastBurn"]:
        assert a in alerts, a
    dash = json.loads(DASHBOARD.read_text())
    targets = [t for p in dash["panels"] for t in p.get("targets", [])]
    assert len(targets) >= 20
    exprs += [t["expr"] for t in targets]

    srv = make_server(extra_args=["--metrics-public"])
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    # A success and an error: labelled series appear with their first request.
    s3.create_bucket(Bucket="metrics-names")
    with pytest.raises(ClientError):
        s3.get_object(Bucket="metrics-names", Key="absent")
    wanted, used_records = set(), set()
    for e in exprs:
        m, r = _referenced(e)
        wanted |= m
        used_records |= r
    assert used_records <= records, used_records - records
    wanted.discard("up")  # Prometheus' own series for every scrape target
    # Some series appear after the first pass of a worker (lifecycle): poll briefly.
    have = wait_for(lambda: (lambda n: n if wanted <= n else None)(names(scrape(srv))), 20,
                    f"series {sorted(wanted - names(scrape(srv)))}")
    assert wanted <= have
    # promtool comes with Debian's prometheus package (scripts/setup.sh); missing, the test fails.
    r = subprocess.run([require_tool("promtool"), "check", "rules", str(RULES)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
