"""PostObject, the HTML-form browser upload (issue 14): boto3's generate_presigned_post and
`requests` (the client the boto3 docs use), S3's answers (204, 201 with a PostResponse, 303 to
success_action_redirect), S3's refusals (a policy condition that fails, content-length-range,
an expired policy, a bad signature, fields before the file over 20 KiB, an anonymous POST to a
private bucket), the form's ACL / metadata / tagging fields going through PutObject's code, and
a real browser (headless Chromium) submitting the HTML form from another origin."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import xml.etree.ElementTree as ET

import pytest
import requests

from conftest import IS_MOTO
from s3util import expect_error, parse_error

pytestmark = pytest.mark.strata_only(reason="exact PostObject errors and limits are strata's")


OBJECT_WRITER = {"Rules": [{"ObjectOwnership": "ObjectWriter"}]}

def post(presigned, data: bytes, extra: dict | None = None, filename="upload.txt"):
    fields = dict(presigned["fields"])
    fields.update(extra or {})
    return requests.post(presigned["url"], data=fields, files={"file": (filename, data)},
                         timeout=30, allow_redirects=False)


def error_of(r):
    return parse_error(r.content)


def test_presigned_post_uploads_and_answers_as_s3(s3, bucket):
    p = s3.generate_presigned_post(bucket, "forms/${filename}", ExpiresIn=300)
    r = post(p, b"hello from a form", filename="C:\\Users\\me\\note.txt")
    assert r.status_code == 204, r.text
    assert r.content == b""
    etag = r.headers["ETag"]
    assert r.headers["Location"].endswith(f"/{bucket}/forms%2Fnote.txt")
    got = s3.get_object(Bucket=bucket, Key="forms/note.txt")
    assert got["Body"].read() == b"hello from a form" and got["ETag"] == etag
    # a file of many chunks streams through
    big = bytes(range(256)) * (9 << 12)  # 9 MiB
    p = s3.generate_presigned_post(bucket, "big.bin", ExpiresIn=300)
    r = post(p, big)
    assert r.status_code == 204, r.text
    assert r.headers["ETag"] == '"%s"' % hashlib.md5(big).hexdigest()
    assert s3.get_object(Bucket=bucket, Key="big.bin")["Body"].read() == big
    # success_action_status=201: the PostResponse document
    p = s3.generate_presigned_post(bucket, "k201", Fields={"success_action_status": "201"},
                                   Conditions=[{"success_action_status": "201"}], ExpiresIn=300)
    r = post(p, b"x" * 1000)
    assert r.status_code == 201 and r.headers["Content-Type"] == "application/xml", r.text
    doc = ET.fromstring(r.content)
    assert doc.tag == "PostResponse"
    assert doc.find("Bucket").text == bucket and doc.find("Key").text == "k201"
    assert doc.find("ETag").text == '"%s"' % hashlib.md5(b"x" * 1000).hexdigest()
    assert doc.find("Location").text.endswith(f"/{bucket}/k201")
    # success_action_redirect: 303 with bucket, key and etag in the query
    target = "http://127.0.0.1:9/done?from=form"
    p = s3.generate_presigned_post(bucket, "dir/k303", Fields={"success_action_redirect": target},
                                   Conditions=[["starts-with", "$success_action_redirect", "http://127.0.0.1"]],
                                   ExpiresIn=300)
    r = post(p, b"redirected")
    assert r.status_code == 303, r.text
    assert r.headers["Location"] == (target + "&bucket=" + bucket + "&key=dir%2Fk303&etag=%22"
                                     + hashlib.md5(b"redirected").hexdigest() + "%22")


def test_form_fields_go_through_put_object(s3, bucket):
    # ACLs need ObjectWriter ownership: new buckets are BucketOwnerEnforced (docs/access-control.md).
    s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls=OBJECT_WRITER)
    fields = {"acl": "public-read", "Content-Type": "text/plain", "x-amz-meta-color": "blue",
              "tagging": "<Tagging><TagSet><Tag><Key>team</Key><Value>web</Value></Tag></TagSet></Tagging>",
              "x-amz-server-side-encryption": "AES256"}
    conds = [{"acl": "public-read"}, ["starts-with", "$Content-Type", "text/"],
             ["starts-with", "$x-amz-meta-color", ""], ["starts-with", "$tagging", ""],
             {"x-amz-server-side-encryption": "AES256"}]
    p = s3.generate_presigned_post(bucket, "meta", Fields=fields, Conditions=conds, ExpiresIn=300)
    r = post(p, b"with fields")
    assert r.status_code == 204, r.text
    assert r.headers["x-amz-server-side-encryption"] == "AES256"
    head = s3.head_object(Bucket=bucket, Key="meta")
    assert head["ContentType"] == "text/plain" and head["Metadata"] == {"color": "blue"}
    assert head["ServerSideEncryption"] == "AES256"
    assert s3.get_object_tagging(Bucket=bucket, Key="meta")["TagSet"] == [{"Key": "team", "Value": "web"}]
    grants = s3.get_object_acl(Bucket=bucket, Key="meta")["Grants"]
    assert any(g["Grantee"].get("URI", "").endswith("/AllUsers") and g["Permission"] == "READ"
               for g in grants), grants
    # an invalid canned ACL is refused as PutObject refuses it; nothing is stored
    p = s3.generate_presigned_post(bucket, "badacl", Fields={"acl": "public-everything"},
                                   Conditions=[{"acl": "public-everything"}], ExpiresIn=300)
    r = post(p, b"x")
    assert r.status_code == 400, r.text
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="badacl")


def test_policy_violations_get_s3s_errors_and_store_nothing(s3, bucket):
    # a key outside the policy's prefix
    p = s3.generate_presigned_post(bucket, "user/a/${filename}", ExpiresIn=300)
    fields = dict(p["fields"], key="other/x.txt")
    r = requests.post(p["url"], data=fields, files={"file": ("x.txt", b"x")}, timeout=30)
    assert r.status_code == 403, r.text
    e = error_of(r)
    assert e["Code"] == "AccessDenied"
    assert e["Message"] == ('Invalid according to Policy: Policy Condition failed: '
                            '["starts-with", "$key", "user/a/"]'), e
    # a file outside content-length-range
    p = s3.generate_presigned_post(bucket, "sized", Conditions=[["content-length-range", 5, 10]],
                                   ExpiresIn=300)
    r = post(p, b"x" * 11)
    e = error_of(r)
    assert r.status_code == 400 and e["Code"] == "EntityTooLarge", r.text
    assert e["MaxSizeAllowed"] == "10" and int(e["ProposedSize"]) > 10
    r = post(p, b"x" * 4)
    e = error_of(r)
    assert r.status_code == 400 and e["Code"] == "EntityTooSmall", r.text
    assert e["MinSizeAllowed"] == "5" and e["ProposedSize"] == "4"
    assert post(p, b"x" * 10).status_code == 204  # the bounds are inclusive
    s3.delete_object(Bucket=bucket, Key="sized")
    # a field no condition covers
    p = s3.generate_presigned_post(bucket, "extra", ExpiresIn=300)
    r = post(p, b"x", extra={"x-amz-meta-note": "n"})
    assert r.status_code == 403 and error_of(r)["Message"] == \
        "Invalid according to Policy: Extra input fields: x-amz-meta-note", r.text
    # an expired policy
    p = s3.generate_presigned_post(bucket, "late", ExpiresIn=1)
    time.sleep(2.1)
    r = post(p, b"x")
    assert r.status_code == 403, r.text
    assert error_of(r)["Message"] == "Invalid according to Policy: Policy expired."
    # a policy that is not a policy
    p = s3.generate_presigned_post(bucket, "doc", ExpiresIn=300)
    bad = base64.b64encode(b'{"conditions": []}').decode()
    r = post(p, b"x", extra={"policy": bad})
    assert r.status_code == 403 and error_of(r)["Code"] == "SignatureDoesNotMatch", r.text
    # a bad signature
    r = post(p, b"x", extra={"x-amz-signature": "0" * 64})
    e = error_of(r)
    assert r.status_code == 403 and e["Code"] == "SignatureDoesNotMatch", r.text
    assert e["StringToSign"] == p["fields"]["policy"]
    # fields before the file over 20 KiB
    p = s3.generate_presigned_post(bucket, "big", ExpiresIn=300)
    r = post(p, b"x", extra={"x-ignore-pad": "p" * (21 * 1024)})
    e = error_of(r)
    assert r.status_code == 400 and e["Code"] == "MaxPostPreDataLengthExceeded", r.text
    assert e["MaxPostPreDataLengthBytes"] == "20480"
    for k in ("user/a/x.txt", "other/x.txt", "extra", "late", "doc", "big"):
        expect_error(s3.head_object, "404", 404, Bucket=bucket, Key=k)


def _signed_v4_form(s3, bucket, policy_doc: dict) -> dict:
    """A SigV4 POST form for an arbitrary policy document, signed as boto3 signs."""
    creds = s3._request_signer._credentials
    region = s3.meta.region_name
    now = time.gmtime()
    day, stamp = time.strftime("%Y%m%d", now), time.strftime("%Y%m%dT%H%M%SZ", now)
    cred = f"{creds.access_key}/{day}/{region}/s3/aws4_request"
    policy_doc["conditions"] += [{"x-amz-algorithm": "AWS4-HMAC-SHA256"}, {"x-amz-credential": cred},
                                 {"x-amz-date": stamp}]
    policy = base64.b64encode(json.dumps(policy_doc).encode()).decode()

    def mac(k, m):
        return hmac.new(k, m.encode(), hashlib.sha256).digest()

    k = mac(mac(mac(mac(("AWS4" + creds.secret_key).encode(), day), region), "s3"), "aws4_request")
    return {"x-amz-algorithm": "AWS4-HMAC-SHA256", "x-amz-credential": cred, "x-amz-date": stamp,
            "policy": policy, "x-amz-signature": hmac.new(k, policy.encode(), hashlib.sha256).hexdigest()}


def test_malformed_policy_document_is_invalid_policy_document(server, s3, bucket):
    fields = _signed_v4_form(s3, bucket, {"expiration": "tomorrow", "conditions": [{"bucket": bucket}]})
    fields["key"] = "k"
    r = requests.post(f"{server.endpoint}/{bucket}", data=fields, files={"file": ("f", b"x")}, timeout=30)
    e = error_of(r)
    assert r.status_code == 400 and e["Code"] == "InvalidPolicyDocument", r.text
    assert e["Message"] == "Invalid Policy: Invalid 'expiration' value: 'tomorrow'"


def test_sigv2_post(server, s3, bucket):
    creds = s3._request_signer._credentials
    doc = {"expiration": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 300)),
           "conditions": [{"bucket": bucket}, {"key": "v2"}]}
    policy = base64.b64encode(json.dumps(doc).encode()).decode()
    sig = base64.b64encode(hmac.new(creds.secret_key.encode(), policy.encode(), hashlib.sha1).digest()).decode()
    fields = {"key": "v2", "AWSAccessKeyId": creds.access_key, "policy": policy, "signature": sig}
    r = requests.post(f"{server.endpoint}/{bucket}", data=fields, files={"file": ("f", b"v2 body")}, timeout=30)
    assert r.status_code == 204, r.text
    assert s3.get_object(Bucket=bucket, Key="v2")["Body"].read() == b"v2 body"
    fields["signature"] = base64.b64encode(b"\0" * 20).decode()
    r = requests.post(f"{server.endpoint}/{bucket}", data=fields, files={"file": ("f", b"x")}, timeout=30)
    assert r.status_code == 403 and error_of(r)["Code"] == "SignatureDoesNotMatch", r.text


def test_anonymous_post_only_where_the_bucket_allows_it(server, s3, bucket):
    # ACLs need ObjectWriter ownership: new buckets are BucketOwnerEnforced (docs/access-control.md).
    s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls=OBJECT_WRITER)
    url = f"{server.endpoint}/{bucket}"
    r = requests.post(url, data={"key": "anon"}, files={"file": ("f", b"x" * 100_000)}, timeout=30)
    assert r.status_code == 403 and error_of(r) ["Code"] == "AccessDenied", r.text
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="anon")
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read-write")
    r = requests.post(url, data={"key": "anon"}, files={"file": ("f", b"anonymous form")}, timeout=30)
    assert r.status_code == 204, r.text
    assert s3.get_object(Bucket=bucket, Key="anon")["Body"].read() == b"anonymous form"
    s3.put_bucket_acl(Bucket=bucket, ACL="private")
    # no key, no file: S3's InvalidArgument naming the field
    r = requests.post(url, data={"acl": "private"}, files={"file": ("f", b"x")}, timeout=30)
    e = error_of(r)
    assert r.status_code == 400 and e["Code"] == "InvalidArgument" and e["ArgumentName"] == "key", r.text
    r = requests.post(url, files={"key": (None, "k")}, timeout=30)
    e = error_of(r)
    assert r.status_code == 400 and e["ArgumentName"] == "file" and e["ArgumentValue"] == "0", r.text


# ---- the real browser ------------------------------------------------------------------------------
FORM_PAGE = """<!doctype html><html><body>
<form id="f" action="%(url)s" method="post" enctype="multipart/form-data">
%(inputs)s
<input type="hidden" name="file" value="">
</form>
<script>
// The real HTML form, its file set from script (a headless browser has no file dialog).
const f = document.getElementById("f");
f.querySelector('[name="file"]').remove();
const input = document.createElement("input");
input.type = "file"; input.name = "file";
const dt = new DataTransfer();
dt.items.add(new File(["uploaded by a browser form"], "from-browser.txt", {type: "text/plain"}));
input.files = dt.files;
f.appendChild(input);
f.submit();
</script></body></html>"""


def _browser_nav(page, timeout=45.0) -> dict:
    """Serves page(port) from http://127.0.0.2:PORT/ to headless Chromium and returns the query
    of the first request to /done on that server (where the upload redirects the browser)."""
    from test_cors import _free_port
    import shutil
    import subprocess
    import tempfile
    import threading
    import urllib.parse
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    port = _free_port("127.0.0.2")
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.startswith("/done"):
                seen.append(urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query))
                body = b"done"
            else:
                body = page(port).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.2", port), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
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
        while not seen and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert seen, f"the browser was not redirected within {timeout}s (chromium exit {proc.poll()})"
        return seen[0]
    finally:
        proc.kill()
        proc.wait(timeout=20)
        httpd.shutdown()
        httpd.server_close()
        shutil.rmtree(profile, ignore_errors=True)


def test_browser_submits_the_html_form_to_another_origin(s3, bucket):
    key = "browser/${filename}"
    done = "http://127.0.0.2:{port}/done"
    p = s3.generate_presigned_post(bucket, key, ExpiresIn=300,
                                   Fields={"success_action_redirect": "REPLACED"},
                                   Conditions=[["starts-with", "$success_action_redirect", "http://127.0.0.2:"]])

    def page(port):
        fields = dict(p["fields"], success_action_redirect=done.format(port=port))
        inputs = "\n".join(f'<input type="hidden" name="{k}" value="{v}">' for k, v in fields.items())
        return FORM_PAGE % {"url": p["url"], "inputs": inputs}

    query = _browser_nav(page)
    assert query.get("bucket") == [bucket] and query.get("key") == ["browser/from-browser.txt"], query
    got = s3.get_object(Bucket=bucket, Key="browser/from-browser.txt")
    assert got["Body"].read() == b"uploaded by a browser form"
    assert query["etag"] == [got["ETag"]]
