"""Hostile requests against the HTTP edge (issue 9). See docs/security-limits.md.

Raw sockets and http.client, signed by botocore (header auth) or by the small SigV4/SigV2 signers
below (when a test needs UNSIGNED-PAYLOAD, a lying Content-Length, a stalled body, or SigV2).
Attackers connect from other loopback addresses (127.0.0.2, 127.0.0.3) than the victim
(127.0.0.1), which is how the server tells sources apart. Every loop is bounded in count and time.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import hashlib
import hmac
import http.client
import os
import socket
import stat
import time
import urllib.parse
import xml.etree.ElementTree as ET

import boto3
import botocore.config
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import REGION, empty_bucket, make_s3, unique_bucket
from s3util import expect_error, parse_error

pytestmark = pytest.mark.strata_only(
    reason="edge hardening (SigV2 refusal, lockout, limits, timeouts) is strata's own; moto checks "
           "neither signatures nor limits")

UNSIGNED = "UNSIGNED-PAYLOAD"


# ---- signing ---------------------------------------------------------------------------------------
def _q(s: str) -> str:
    return urllib.parse.quote(s, safe="-_.~")


def sigv4(method: str, path: str, query: dict[str, str], headers: dict[str, str], ak: str, sk: str,
          payload_hash: str = UNSIGNED, when: dt.datetime | None = None) -> dict[str, str]:
    """Returns headers + x-amz-date/x-amz-content-sha256/Authorization (all given headers signed)."""
    when = when or dt.datetime.now(dt.timezone.utc)
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    scope = f"{when:%Y%m%d}/{REGION}/s3/aws4_request"
    h = dict(headers)
    h["x-amz-date"] = amz_date
    h["x-amz-content-sha256"] = payload_hash
    names = sorted(k.lower() for k in h)
    lower = {k.lower(): str(v).strip() for k, v in h.items()}
    canon_q = "&".join(f"{_q(k)}={_q(v)}" for k, v in sorted(query.items()))
    canon = "\n".join([method, urllib.parse.quote(path, safe="/~"), canon_q,
                       "".join(f"{n}:{lower[n]}\n" for n in names), ";".join(names), payload_hash])
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canon.encode()).hexdigest()])
    key = ("AWS4" + sk).encode()
    for part in (f"{when:%Y%m%d}", REGION, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
    h["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={ak}/{scope}, "
                          f"SignedHeaders={';'.join(names)}, Signature={sig}")
    return h


def botocore_signed(method: str, url: str, ak: str, sk: str, body: bytes = b"",
                    headers: dict | None = None) -> dict[str, str]:
    """Headers of a request signed by botocore's own S3 SigV4 signer (payload hashed)."""
    req = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    S3SigV4Auth(Credentials(ak, sk), "s3", REGION).add_auth(req)
    return dict(req.headers.items())


def sigv2_header(method: str, resource: str, ak: str, sk: str, date: str,
                 amz: dict[str, str] | None = None, content_type: str = "") -> str:
    """`Authorization: AWS AK:SIG` as S3's SigV2 defines it (header auth)."""
    amz_lines = "".join(f"{k}:{v}\n" for k, v in sorted((amz or {}).items()))
    sts = f"{method}\n\n{content_type}\n{date}\n{amz_lines}{resource}"
    sig = base64.b64encode(hmac.new(sk.encode(), sts.encode(), hashlib.sha1).digest()).decode()
    return f"AWS {ak}:{sig}"


# ---- transport -------------------------------------------------------------------------------------
def hostport(server) -> tuple[str, int]:
    host, port = server.endpoint.removeprefix("http://").split(":")
    return host, int(port)


def send(server, method: str, target: str, headers: dict, body: bytes = b"",
         source: str | None = None, timeout: float = 30):
    """One request over a new connection (optionally from another loopback address)."""
    host, port = hostport(server)
    conn = http.client.HTTPConnection(host, port, timeout=timeout,
                                      source_address=(source, 0) if source else None)
    try:
        conn.request(method, target, body=body, headers=headers)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def code_of(body: bytes) -> str | None:
    try:
        return parse_error(body).get("Code")
    except ET.ParseError:
        return None


def raw_socket(server, source: str | None = None, rcvbuf: int | None = None) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if source:
        s.bind((source, 0))
    s.settimeout(10)
    s.connect(hostport(server))
    return s


def closed_within(s: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed `s` (EOF or reset), reading and discarding; None if it did
    not within `seconds`."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        s.settimeout(max(0.05, seconds - (time.monotonic() - start)))
        try:
            if not s.recv(65536):
                return time.monotonic() - start
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - start
        except socket.timeout:
            return None
    return None


def proc_stat(server) -> tuple[int, int]:
    """(RSS bytes, bytes read by syscalls so far) of the server process."""
    pid = server.proc.pid
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
    with open(f"/proc/{pid}/io") as f:
        rchar = next(int(l.split()[1]) for l in f if l.startswith("rchar:"))
    return rss, rchar


def push(s: socket.socket, total: int, seconds: float) -> int:
    """Sends up to `total` bytes within `seconds`; returns how many the kernel accepted."""
    chunk, sent, start = b"x" * 65536, 0, time.monotonic()
    s.settimeout(0.5)
    while sent < total and time.monotonic() - start < seconds:
        try:
            sent += s.send(chunk[: total - sent])
        except socket.timeout:
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
    return sent


def read_response_head(s: socket.socket, seconds: float = 5) -> bytes:
    """Reads until the end of the response headers plus whatever body came with them."""
    data, start = b"", time.monotonic()
    s.settimeout(seconds)
    while b"\r\n\r\n" not in data and time.monotonic() - start < seconds:
        got = s.recv(65536)
        if not got:
            break
        data += got
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next((int(l.split(b":")[1]) for l in head.split(b"\r\n")
                   if l.lower().startswith(b"content-length:")), 0)
    while len(rest) < length and time.monotonic() - start < seconds:
        got = s.recv(65536)
        if not got:
            break
        rest += got
    return head + b"\r\n\r\n" + rest


# ---- 1. SigV2 ------------------------------------------------------------------------------------
def test_sigv2_header_and_query_as_s3(server, s3, bucket):
    """SigV2 as S3 does it: a fresh Date signs (header form), an hour-old one is
    RequestTimeTooSkewed; a presigned URL works until Expires, then AccessDenied; a wrong
    signature is SignatureDoesNotMatch; the admin API refuses SigV2 (its verb is not signed)."""
    ak, sk = server.access_key, server.secret_key
    users_before = {u["user"] for u in server.admin_json("user", "list")}
    old = email.utils.formatdate(time.time() - 3600, usegmt=True)  # outside S3's 15-minute window
    now = email.utils.formatdate(time.time(), usegmt=True)

    def put(key, date, secret=sk, body=b"v2 body"):
        return send(server, "PUT", f"/{bucket}/{key}", {
            "Date": date, "Content-Type": "text/plain", "x-amz-meta-who": "v2",
            "Authorization": sigv2_header("PUT", f"/{bucket}/{key}", ak, secret, date,
                                          amz={"x-amz-meta-who": "v2"}, content_type="text/plain")},
            body)

    status, _, body = put("v2-now", now)
    assert status == 200, (status, body)
    got = s3.get_object(Bucket=bucket, Key="v2-now")
    assert got["Body"].read() == b"v2 body" and got["Metadata"] == {"who": "v2"}
    status, _, body = put("v2-old", old)
    assert status == 403 and code_of(body) == "RequestTimeTooSkewed", (status, body)
    status, _, body = put("v2-bad", now, secret="not-the-secret")
    assert status == 403 and code_of(body) == "SignatureDoesNotMatch", (status, body)
    # a signed header changed after signing
    status, _, body = send(server, "PUT", f"/{bucket}/v2-meta", {
        "Date": now, "Content-Type": "text/plain", "x-amz-meta-who": "mallory",
        "Authorization": sigv2_header("PUT", f"/{bucket}/v2-meta", ak, sk, now,
                                      amz={"x-amz-meta-who": "v2"}, content_type="text/plain")}, b"x")
    assert status == 403 and code_of(body) == "SignatureDoesNotMatch", (status, body)
    # the admin verb is not in SigV2's string to sign: a signature of `POST /` would create users
    for date in (old, now):
        status, _, body = send(server, "POST", "/?x-strata-admin=user-add", {
            "Date": date, "Content-Type": "application/json",
            "Authorization": sigv2_header("POST", "/", ak, sk, date, content_type="application/json")},
            b'{"name":"mallory"}')
        assert status == 400 and code_of(body) == "InvalidRequest", (status, body)

    # presigned (query): botocore's own SigV2 signer, then expired, then tampered
    s3.put_object(Bucket=bucket, Key="v2-get", Body=b"secret")
    v2 = boto3.client("s3", endpoint_url=server.endpoint, region_name=REGION,
                      aws_access_key_id=ak, aws_secret_access_key=sk,
                      config=botocore.config.Config(signature_version="s3"))
    url = v2.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "v2-get"},
                                    ExpiresIn=300)
    assert "Signature=" in url and "X-Amz-Signature" not in url
    target = url.removeprefix(server.endpoint)
    status, _, body = send(server, "GET", target, {})
    assert status == 200 and body == b"secret", (status, body)
    expires = int(time.time()) - 60
    sts = f"GET\n\n\n{expires}\n/{bucket}/v2-get"
    sig = base64.b64encode(hmac.new(sk.encode(), sts.encode(), hashlib.sha1).digest()).decode()
    status, _, body = send(server, "GET", f"/{bucket}/v2-get?AWSAccessKeyId={ak}&Expires={expires}"
                           f"&Signature={urllib.parse.quote(sig, safe='')}", {})
    assert status == 403 and code_of(body) == "AccessDenied" and b"expired" in body, (status, body)
    status, _, body = send(server, "GET", target.replace("v2-get", "v2-now"), {})
    assert status == 403 and code_of(body) == "SignatureDoesNotMatch", (status, body)
    assert body.find(b"secret") < 0
    # boto3 with SigV2 header auth end to end
    v2.put_object(Bucket=bucket, Key="v2-boto", Body=b"boto v2", Metadata={"a": "b"})
    assert v2.get_object(Bucket=bucket, Key="v2-boto")["Body"].read() == b"boto v2"
    assert [t["Key"] for t in v2.list_objects_v2(Bucket=bucket, Prefix="v2-")["Contents"]] \
        == ["v2-boto", "v2-get", "v2-now"]
    # nothing else changed
    assert {u["user"] for u in server.admin_json("user", "list")} == users_before


# ---- 2. headers not covered by the signature -------------------------------------------------------
@pytest.fixture
def locked_version(s3):
    name = unique_bucket("hostile-lock")
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    until = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
    v = s3.put_object(Bucket=name, Key="k", Body=b"keep me", ObjectLockMode="GOVERNANCE",
                      ObjectLockRetainUntilDate=until)["VersionId"]
    yield name, v
    empty_bucket(s3, name)


def test_unsigned_bypass_header_refused_and_locked_version_survives(server, s3, locked_version):
    name, vid = locked_version
    url = f"{server.endpoint}/{name}/k?versionId={vid}"
    headers = botocore_signed("DELETE", url, server.access_key, server.secret_key)
    # the attacker alters the captured, correctly signed DELETE
    headers["x-amz-bypass-governance-retention"] = "true"
    status, _, body = send(server, "DELETE", f"/{name}/k?versionId={vid}", headers)
    assert status == 403, (status, body)
    err = parse_error(body)
    assert err["Code"] == "AccessDenied"
    assert err["Message"] == "There were headers present in the request which were not signed"
    assert err["HeadersNotSigned"] == "x-amz-bypass-governance-retention"
    assert s3.get_object(Bucket=name, Key="k", VersionId=vid)["Body"].read() == b"keep me"
    # the same request without the injected header meets the lock, as it should
    headers.pop("x-amz-bypass-governance-retention")
    status, _, body = send(server, "DELETE", f"/{name}/k?versionId={vid}", headers)
    assert status == 403 and code_of(body) == "AccessDenied" and b"HeadersNotSigned" not in body
    assert s3.head_object(Bucket=name, Key="k", VersionId=vid)["ContentLength"] == 7


def test_unsigned_metadata_refused_header_and_presigned(server, s3, bucket):
    url = f"{server.endpoint}/{bucket}/injected"
    headers = botocore_signed("PUT", url, server.access_key, server.secret_key, body=b"data")
    headers["x-amz-meta-evil"] = "1"
    headers["X-Amz-Tagging"] = "a=b"
    status, _, body = send(server, "PUT", f"/{bucket}/injected", headers, b"data")
    assert status == 403 and parse_error(body)["HeadersNotSigned"] == "x-amz-meta-evil, x-amz-tagging"
    # presigned: only what X-Amz-SignedHeaders lists may be added (x-amz-content-sha256 aside)
    presigned = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "injected"},
                                          ExpiresIn=300)
    target = presigned.removeprefix(server.endpoint)
    status, _, body = send(server, "PUT", target, {"x-amz-meta-evil": "1"}, b"data")
    assert status == 403 and parse_error(body)["HeadersNotSigned"] == "x-amz-meta-evil"
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="injected")
    # the untouched presigned URL works, also with the exempt x-amz-content-sha256
    status, _, body = send(server, "PUT", target, {"x-amz-content-sha256": UNSIGNED}, b"data")
    assert status == 200, body
    assert s3.head_object(Bucket=bucket, Key="injected").get("Metadata") == {}


# ---- 3. the failed-signature lockout ---------------------------------------------------------------
def test_lockout_cannot_block_the_victim(fresh_server):
    srv = fresh_server
    victim = make_s3(srv.endpoint, srv.access_key, srv.secret_key)  # from 127.0.0.1
    victim.create_bucket(Bucket="victim")

    def attack(sk: str, source: str):
        h = botocore_signed("GET", f"{srv.endpoint}/", srv.access_key, sk)
        status, _, body = send(srv, "GET", "/", h, source=source)
        return status, code_of(body)

    seen = []
    for i in range(60):
        seen.append(attack("wrong-secret-" + str(i), "127.0.0.2"))
        # the victim's correct requests are never refused
        victim.put_object(Bucket="victim", Key=f"k{i % 3}", Body=b"v")
        assert victim.list_buckets()["Buckets"][0]["Name"] == "victim"
    assert seen[0] == (403, "SignatureDoesNotMatch")
    assert seen[-1] == (503, "SlowDown"), seen
    assert seen.count((403, "SignatureDoesNotMatch")) < 25
    # the guesser itself is refused even when it guesses right: guessing is limited
    assert attack(srv.secret_key, "127.0.0.2") == (503, "SlowDown")
    # ... but the same key works from the victim's address, with every client path
    assert victim.get_object(Bucket="victim", Key="k0")["Body"].read() == b"v"

    # A decoy: a presigned query (checked by s3s) for bob's key with a wrong signature, plus an
    # Authorization header naming the victim's key. Failures count against bob's key only.
    bob = srv.admin_json("user", "add", "bob")
    now = dt.datetime.now(dt.timezone.utc)
    q = {"X-Amz-Algorithm": "AWS4-HMAC-SHA256",
         "X-Amz-Credential": f"{bob['access_key']}/{now:%Y%m%d}/{REGION}/s3/aws4_request",
         "X-Amz-Date": now.strftime("%Y%m%dT%H%M%SZ"), "X-Amz-Expires": "300",
         "X-Amz-SignedHeaders": "host", "X-Amz-Signature": "0" * 64}
    decoy = sigv4("GET", "/", {}, {"host": f"127.0.0.1:{srv.port}"}, srv.access_key, "wrong")
    decoy.pop("x-amz-content-sha256")
    decoy.pop("x-amz-date")
    target = "/?" + urllib.parse.urlencode(q)
    codes = [code_of(send(srv, "GET", target, decoy, source="127.0.0.3")[2]) for _ in range(25)]
    assert codes[0] == "SignatureDoesNotMatch" and codes[-1] == "SlowDown", codes
    bob_s3 = make_s3(srv.endpoint, bob["access_key"], bob["secret_key"])
    # from 127.0.0.3: the victim's key is not locked, bob's is
    status, _, _ = send(srv, "GET", "/", botocore_signed("GET", f"{srv.endpoint}/", srv.access_key,
                                                         srv.secret_key), source="127.0.0.3")
    assert status == 200
    status, _, body = send(srv, "GET", "/", botocore_signed("GET", f"{srv.endpoint}/", bob["access_key"],
                                                            bob["secret_key"]), source="127.0.0.3")
    assert (status, code_of(body)) == (503, "SlowDown")
    assert bob_s3.list_buckets()["Buckets"] == []  # bob from 127.0.0.1 is fine
    # the log names the key s3s checked, cut and cleaned, never the secret
    log = srv.log_path.read_text("utf-8", "replace")
    assert "strata::security" in log and srv.secret_key not in log


def test_logged_keys_are_cut_and_cleaned(server):
    evil = "AKIA\t" + "X" * 5000  # a tab is the one control character HTTP lets through
    h = {"Authorization": f"AWS4-HMAC-SHA256 Credential={evil}/20260101/{REGION}/s3/aws4_request, "
                          "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64,
         "x-amz-date": "20260101T000000Z", "x-amz-content-sha256": UNSIGNED}
    status, _, _ = send(server, "GET", "/", h)
    assert status in (400, 403)
    log = server.log_path.read_text("utf-8", "replace")
    assert "AKIA?XXXX" in log, "the access log names the claimed key, cleaned"
    assert "AKIA\tX" not in log and "X" * 100 not in log


# ---- 4. resource limits --------------------------------------------------------------------------------
def _form_post_head(server, bucket, first_part: str) -> bytes:
    return (f"POST /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            "Content-Type: multipart/form-data; boundary=XyZ\r\n"
            f"Content-Length: {1 << 30}\r\n\r\n--XyZ\r\n" + first_part).encode()


@pytest.mark.parametrize("case", ["anonymous", "pre_data"])
def test_form_posts_are_refused_before_their_file_is_read(server, bucket, case):
    """PostObject reads the form at the edge with bounded memory: an anonymous upload to a
    private bucket is refused once the fields before the file are read (the file is not), and
    fields before the file are capped at S3's 20 KiB (MaxPostPreDataLengthExceeded)."""
    rss0, rchar0 = proc_stat(server)
    s = raw_socket(server)
    if case == "anonymous":
        head = _form_post_head(server, bucket, "Content-Disposition: form-data; name=\"key\"\r\n\r\nk\r\n--XyZ\r\n"
                               "Content-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\n")
        code, status = b"AccessDenied", b"403"
    else:
        head = _form_post_head(server, bucket, "Content-Disposition: form-data; name=\"x-ignore-pad\"\r\n\r\n")
        code, status = b"MaxPostPreDataLengthExceeded", b"400"
    t0 = time.monotonic()
    s.sendall(head + b"x" * (128 << 10))
    resp = read_response_head(s)
    took = time.monotonic() - t0
    assert resp.startswith(b"HTTP/1.1 " + status), resp[:300]
    assert b"<Code>" + code + b"</Code>" in resp and b"connection: close" in resp.lower()
    assert took < 2, took
    # The server does not read the rest: the connection ends while we push 64 MiB at it.
    pushed = push(s, 64 << 20, 10)
    gone = closed_within(s, 5)
    s.close()
    rss1, rchar1 = proc_stat(server)
    assert pushed < 64 << 20 or gone is not None
    assert rchar1 - rchar0 < 4 << 20, f"server read {rchar1 - rchar0} bytes"
    assert rss1 - rss0 < 16 << 20, f"server RSS grew by {rss1 - rss0} bytes"


def test_oversized_xml_bodies_get_4xx_without_being_read(server, s3, bucket):
    limit = 8 << 20
    rss0, rchar0 = proc_stat(server)
    for method, path, query in (("POST", f"/{bucket}", {"delete": ""}),
                                ("PUT", f"/{bucket}/k", {"tagging": ""}),
                                ("PUT", f"/{bucket}", {"versioning": ""})):
        h = sigv4(method, path, query, {"host": f"127.0.0.1:{server.port}",
                                        "content-length": str(100 << 20)},
                  server.access_key, server.secret_key)
        s = raw_socket(server)
        target = path + "?" + "&".join(f"{k}" if not v else f"{k}={v}" for k, v in query.items())
        s.sendall(f"{method} {target} HTTP/1.1\r\n".encode()
                  + "".join(f"{k}: {v}\r\n" for k, v in h.items()).encode() + b"\r\n"
                  + b"<Delete>" + b" " * 8192)
        resp = read_response_head(s)
        status = resp.split(b" ", 2)[1]
        assert status == b"400", resp[:300]
        body = resp.partition(b"\r\n\r\n")[2]
        err = parse_error(body)
        assert err["Code"] == "MaxMessageLengthExceeded" and err["Message"] == "Your request was too big."
        push(s, 32 << 20, 5)
        s.close()
    rss1, rchar1 = proc_stat(server)
    assert rchar1 - rchar0 < 8 << 20, f"server read {rchar1 - rchar0} bytes"
    assert rss1 - rss0 < 32 << 20, f"server RSS grew by {rss1 - rss0} bytes"
    # Length unknown (chunked): answered 4xx (s3s wants a length for signed payloads), not 500,
    # and not buffered whatever is sent.
    h = sigv4("POST", f"/{bucket}", {"delete": ""}, {"host": f"127.0.0.1:{server.port}",
                                                     "transfer-encoding": "chunked"},
              server.access_key, server.secret_key)
    s = raw_socket(server)
    s.sendall(f"POST /{bucket}?delete HTTP/1.1\r\n".encode()
              + "".join(f"{k}: {v}\r\n" for k, v in h.items()).encode() + b"\r\n")
    mib = b" " * (1 << 20)
    s.settimeout(5)
    try:
        for _ in range(16):
            s.sendall(b"100000\r\n" + mib + b"\r\n")
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        pass
    resp = read_response_head(s)
    s.close()
    status = int(resp.split(b" ", 2)[1])
    assert status in (400, 411), resp[:300]
    assert code_of(resp.partition(b"\r\n\r\n")[2]) in ("MissingContentLength",
                                                           "MaxMessageLengthExceeded")
    # object uploads are not capped; a valid multi-delete still works
    s3.put_object(Bucket=bucket, Key="big", Body=b"b" * (limit + (1 << 20)))
    assert s3.head_object(Bucket=bucket, Key="big")["ContentLength"] == limit + (1 << 20)
    out = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "big"}]})
    assert [d["Key"] for d in out["Deleted"]] == ["big"]


def test_slowloris_and_idle_connections_are_cut_off(make_server):
    srv = make_server(extra_args=("--header-timeout", "2", "--idle-timeout", "3"))
    # headers that never end: cut at the header timeout, though bytes keep trickling in
    s = raw_socket(srv)
    s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    t0, cut = time.monotonic(), None
    s.settimeout(0.5)
    for i in range(24):  # at most 12 s
        try:
            s.sendall(f"X-Slow-{i}: a\r\n".encode())
            if s.recv(4096) == b"":
                cut = time.monotonic() - t0
                break
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            cut = time.monotonic() - t0
            break
    s.close()
    assert cut is not None and 1.5 < cut < 5, cut
    # a connection that sends nothing at all
    s = raw_socket(srv)
    took = closed_within(s, 8)
    s.close()
    assert took is not None and took < 5, took
    # an idle keep-alive connection after a complete request
    s = raw_socket(srv)
    s.sendall(b"GET /_strata/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert read_response_head(s).startswith(b"HTTP/1.1 200")
    took = closed_within(s, 8)
    s.close()
    assert took is not None and took < 5, took


def test_stalled_body_and_stalled_reader_are_cut_off(make_server):
    srv = make_server(extra_args=("--body-timeout", "2", "--idle-timeout", "2"))
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    s3.create_bucket(Bucket="stall")
    # a body that stops halfway
    h = sigv4("PUT", "/stall/stalled", {}, {"host": f"127.0.0.1:{srv.port}", "content-length": "1000"},
              srv.access_key, srv.secret_key)
    s = raw_socket(srv)
    t0 = time.monotonic()
    s.sendall(b"PUT /stall/stalled HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()).encode()
              + b"\r\n" + b"x" * 100)
    resp = read_response_head(s, seconds=10)
    took = time.monotonic() - t0
    s.close()
    assert resp.startswith(b"HTTP/1.1 400"), resp[:300]
    assert code_of(resp.partition(b"\r\n\r\n")[2]) == "RequestTimeout"
    assert 1.5 < took < 6, took
    expect_error(s3.head_object, "404", 404, Bucket="stall", Key="stalled")
    # a client that asks for 32 MiB and never reads: the server stops after the idle timeout
    size = 32 << 20
    s3.put_object(Bucket="stall", Key="big", Body=os.urandom(1 << 20) * 32)
    h = sigv4("GET", "/stall/big", {}, {"host": f"127.0.0.1:{srv.port}"}, srv.access_key, srv.secret_key)
    s = raw_socket(srv, rcvbuf=64 * 1024)
    s.sendall(b"GET /stall/big HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()).encode()
              + b"\r\n")
    time.sleep(6)
    got, s_timeout = 0, time.monotonic() + 20
    s.settimeout(2)
    while time.monotonic() < s_timeout:
        try:
            chunk = s.recv(1 << 20)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        got += len(chunk)
    s.close()
    assert 0 < got < size, got
    # the server is fine afterwards
    assert s3.head_object(Bucket="stall", Key="big")["ContentLength"] == size


def test_connection_limit(make_server):
    srv = make_server(extra_args=("--max-connections", "3", "--header-timeout", "30",
                                  "--idle-timeout", "30"))
    holders = [raw_socket(srv) for _ in range(3)]
    time.sleep(0.3)
    s = raw_socket(srv)
    s.sendall(b"GET /_strata/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    resp = read_response_head(s)
    assert resp.startswith(b"HTTP/1.1 503"), resp[:200]
    assert code_of(resp.partition(b"\r\n\r\n")[2]) == "SlowDown"
    assert closed_within(s, 5) is not None
    s.close()
    holders.pop().close()
    deadline, status = time.monotonic() + 5, None
    while time.monotonic() < deadline and status != 200:
        time.sleep(0.1)
        status = send(srv, "GET", "/_strata/health", {})[0]
    assert status == 200
    for h in holders:
        h.close()


# ---- admin backups ------------------------------------------------------------------------------
def test_admin_backup_is_private(server, tmp_path):
    dest = tmp_path / "backup-1"
    server.admin_json("backup", str(dest))
    assert stat.S_IMODE(dest.stat().st_mode) == 0o700
    entries = list(dest.rglob("*"))
    assert any(p.name == "CURRENT" for p in entries)
    for p in entries:
        want = 0o700 if p.is_dir() else 0o600
        assert stat.S_IMODE(p.stat().st_mode) == want, f"{p} is {oct(p.stat().st_mode)}"
    assert [p.name for p in tmp_path.iterdir()] == ["backup-1"]  # no staging dir left
