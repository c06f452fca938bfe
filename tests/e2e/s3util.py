"""Small assertion helpers shared by the boto3-based tests."""

from __future__ import annotations

import base64
import hashlib
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
import zlib

import pytest
from botocore.exceptions import ClientError


def md5_etag(data: bytes) -> str:
    return '"' + hashlib.md5(data).hexdigest() + '"'


def multipart_etag(parts: list[bytes]) -> str:
    digests = b"".join(hashlib.md5(p).digest() for p in parts)
    return '"' + hashlib.md5(digests).hexdigest() + f'-{len(parts)}"'


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def crc32_b64(data: bytes) -> str:
    return b64(zlib.crc32(data).to_bytes(4, "big"))


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), bitwise: test data is small."""
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def crc32c_b64(data: bytes) -> str:
    return b64(crc32c(data).to_bytes(4, "big"))


def sha256_b64(data: bytes) -> str:
    return b64(hashlib.sha256(data).digest())


def sha1_b64(data: bytes) -> str:
    return b64(hashlib.sha1(data).digest())


def expect_error(fn, code: str, status: int | None = None, **kwargs) -> dict:
    """Call fn(**kwargs); it must fail with S3 error `code` (and HTTP `status`). Returns the response."""
    with pytest.raises(ClientError) as ei:
        fn(**kwargs)
    resp = ei.value.response
    got = resp.get("Error", {}).get("Code")
    got_status = resp.get("ResponseMetadata", {}).get("HTTPStatusCode")
    assert got == code, f"expected error {code}, got {got} ({got_status}): {resp.get('Error')}"
    if status is not None:
        assert got_status == status, f"expected HTTP {status} for {code}, got {got_status}"
    return resp


def http(method: str, url: str, data: bytes | None = None, headers: dict | None = None,
         timeout: float = 60):
    """Plain HTTP request (no SDK). Returns (status, headers, body) for any status."""
    headers = dict(headers or {})
    if data is not None:
        # urllib would otherwise label the body as a form (and some servers then consume it)
        headers.setdefault("Content-Type", "application/octet-stream")
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def parse_error(body: bytes) -> dict:
    """S3 error XML -> {tag: text}. The root must be <Error>."""
    root = ET.fromstring(body)
    tag = root.tag.split("}")[-1]
    assert tag == "Error", f"error body root is <{tag}>, expected <Error>: {body[:300]!r}"
    return {child.tag.split("}")[-1]: (child.text or "") for child in root}
