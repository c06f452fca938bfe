"""Who may read /_strata/metrics (docs/metrics.md): nobody anonymous by default, a scraper with
the bearer token, operators through the signed `strata admin metrics`."""

from __future__ import annotations

import secrets
import urllib.error
import urllib.request

import pytest

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
