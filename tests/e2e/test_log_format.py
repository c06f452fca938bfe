"""`--log-format json` (issue 16, structured logs): every line the server writes to stderr is one
JSON object with time, level and target, request fields at the top level, and no secret."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from conftest import make_s3, unique_bucket

pytestmark = pytest.mark.strata_only(reason="strata's own log format")


def _server_lines(path) -> list[str]:
    out = []
    for raw in path.read_text(errors="replace").splitlines():
        # The harness's own start markers and the server's stdout are copied in as well.
        if not raw.strip() or raw.startswith("=====") or raw.startswith("[stdout]"):
            continue
        out.append(raw)
    return out


def test_json_logs_are_one_object_per_line_with_request_fields_and_no_secret(make_server):
    srv = make_server(extra_args=["--log-format", "json"])
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    b = unique_bucket("jsonlog")
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="k", Body=b"x")
    bad = make_s3(srv.endpoint, srv.access_key, "wrong-secret-key-123456")
    with pytest.raises(ClientError):
        bad.head_bucket(Bucket=b)
    srv.stop()

    lines = _server_lines(srv.log_path)
    assert lines, "the server logged nothing"
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON line: {line[:200]}") from None
    for r in records:
        assert {"timestamp", "level", "target"} <= r.keys(), r
    access = [r for r in records if r["target"] == "strata::access"]
    puts = [r for r in access if r.get("method") == "PUT" and r.get("path", "").endswith("/k")]
    assert puts and puts[0]["status"] == 200 and puts[0]["access_key"] == srv.access_key
    assert any(r.get("error") == "SignatureDoesNotMatch" for r in access), access[-3:]
    text = srv.log_path.read_text(errors="replace")
    assert srv.secret_key not in text
