"""CORS (issue 14): Put/Get/DeleteBucketCors, preflight OPTIONS answered from the rules (403 when
none matches), Access-Control-* headers on actual responses, and a real browser: headless
Chromium loads a page from another origin (127.0.0.2) that uploads with a presigned URL and
reads the object back with fetch, which works with the rule and fails without it."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import IS_MOTO
from s3util import expect_error, http as raw_http, parse_error

STRICT = not IS_MOTO


def rule(origin, methods, headers=("*",), **extra):
    r = {"AllowedOrigins": [origin], "AllowedMethods": list(methods), "AllowedHeaders": list(headers)}
    r.update(extra)
    return r


def test_bucket_cors_configuration(s3, bucket):
    expect_error(s3.get_bucket_cors, "NoSuchCORSConfiguration", 404, Bucket=bucket)
    rules = [rule("http://app.example", ["GET", "PUT"], ExposeHeaders=["ETag"], MaxAgeSeconds=600, ID="app"),
             rule("*", ["HEAD"], headers=())]
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": rules})
    got = s3.get_bucket_cors(Bucket=bucket)["CORSRules"]
    assert got[0]["AllowedOrigins"] == ["http://app.example"] and got[0]["AllowedMethods"] == ["GET", "PUT"]
    assert got[0]["ExposeHeaders"] == ["ETag"] and got[0]["MaxAgeSeconds"] == 600 and got[0]["ID"] == "app"
    assert got[1]["AllowedMethods"] == ["HEAD"] and "AllowedHeaders" not in got[1]
    if STRICT:  # moto accepts these
        expect_error(s3.put_bucket_cors, "InvalidRequest", 400, Bucket=bucket,
                     CORSConfiguration={"CORSRules": [rule("*", ["PATCH"])]})
        expect_error(s3.put_bucket_cors, "InvalidRequest", 400, Bucket=bucket,
                     CORSConfiguration={"CORSRules": [rule("http://*.*.example", ["GET"])]})
    assert len(s3.get_bucket_cors(Bucket=bucket)["CORSRules"]) == 2
    assert s3.delete_bucket_cors(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    expect_error(s3.get_bucket_cors, "NoSuchCORSConfiguration", 404, Bucket=bucket)


@pytest.mark.strata_only(reason="moto answers preflight requests without the S3 error codes")
def test_preflight_and_actual_headers(server, s3, bucket):
    url = f"{server.endpoint}/{bucket}/k"
    pre = {"Origin": "http://app.example", "Access-Control-Request-Method": "PUT",
           "Access-Control-Request-Headers": "content-type, x-amz-date"}
    # no configuration: 403
    status, _, body = raw_http("OPTIONS", url, headers=pre)
    assert status == 403 and parse_error(body)["Code"] == "AccessForbidden"
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [
        rule("http://app.example", ["GET", "PUT"], headers=["content-type", "x-amz-*"],
             ExposeHeaders=["ETag", "x-amz-request-id"], MaxAgeSeconds=300)]})
    status, h, _ = raw_http("OPTIONS", url, headers=pre)
    assert status == 200
    assert h["Access-Control-Allow-Origin"] == "http://app.example"
    assert h["Access-Control-Allow-Methods"] == "GET, PUT"
    assert h["Access-Control-Allow-Headers"] == "content-type, x-amz-date"
    assert h["Access-Control-Max-Age"] == "300"
    # another origin, method or header: 403
    for change in ({"Origin": "http://evil.example"}, {"Access-Control-Request-Method": "DELETE"},
                   {"Access-Control-Request-Headers": "authorization"}):
        status, _, body = raw_http("OPTIONS", url, headers={**pre, **change})
        assert status == 403 and parse_error(body)["Code"] == "AccessForbidden", change
    status, _, _ = raw_http("OPTIONS", url, headers={"Access-Control-Request-Method": "PUT"})
    assert status == 400
    # actual requests: the rule's headers when the origin and method match
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=60)
    status, h, _ = raw_http("GET", get_url, headers={"Origin": "http://app.example"})
    assert status == 200 and h["Access-Control-Allow-Origin"] == "http://app.example"
    assert h["Access-Control-Expose-Headers"] == "ETag, x-amz-request-id"
    status, h, _ = raw_http("GET", get_url, headers={"Origin": "http://evil.example"})
    assert status == 200 and "Access-Control-Allow-Origin" not in h
    status, h, _ = raw_http("GET", get_url)
    assert "Access-Control-Allow-Origin" not in h


# ---- the real browser ------------------------------------------------------------------------------
PAGE = """<!doctype html><html><body><script>
const put = %(put)s, get = %(get)s;
async function run() {
  const out = {};
  try {
    const r = await fetch(put, {method: "PUT", body: "uploaded by a browser"});
    out.put = r.status;
    const g = await fetch(get);
    out.get = g.status;
    out.body = await g.text();
  } catch (e) { out.error = String(e); }
  await fetch("/result", {method: "POST", body: JSON.stringify(out)});
}
run();
</script></body></html>"""


def _free_port(host):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _browser_run(put_url, get_url, timeout=45.0):
    """Serves the page from http://127.0.0.2:PORT, lets headless Chromium run it, returns what
    the page reported (or fails after `timeout`)."""
    results: list[dict] = []
    page = PAGE % {"put": json.dumps(put_url), "get": json.dumps(get_url)}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = page.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            results.append(json.loads(self.rfile.read(min(n, 65536)) or b"{}"))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a):
            pass

    port = _free_port("127.0.0.2")
    httpd = ThreadingHTTPServer(("127.0.0.2", port), Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    profile = tempfile.mkdtemp(prefix="strata-chromium-")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.fail("chromium is not installed (run scripts/setup.sh)", pytrace=False)
    proc = subprocess.Popen(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"http://127.0.0.2:{port}/"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not results and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert results, f"the page reported nothing within {timeout}s (chromium exit {proc.poll()})"
        return results[0]
    finally:
        proc.kill()
        proc.wait(timeout=20)
        httpd.shutdown()
        httpd.server_close()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.strata_only(reason="moto does not evaluate CORS rules for browsers")
def test_browser_upload_with_presigned_url(s3, bucket):
    origin = "http://127.0.0.2:*"  # the page's port is picked at run time

    def urls(key):
        return (s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300),
                s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300))

    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [rule(origin, ["GET", "PUT"])]})
    got = _browser_run(*urls("from-browser"))
    assert got == {"put": 200, "get": 200, "body": "uploaded by a browser"}, got
    assert s3.get_object(Bucket=bucket, Key="from-browser")["Body"].read() == b"uploaded by a browser"
    # without the rule the browser refuses: the preflight fails, nothing is uploaded
    s3.delete_bucket_cors(Bucket=bucket)
    key = "blocked-" + uuid.uuid4().hex[:8]
    got = _browser_run(*urls(key))
    assert "error" in got and "put" not in got, got
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key=key)
