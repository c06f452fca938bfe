"""AWS CLI against the issue 14 operations: bucket tagging, GetObjectAttributes, ListBuckets
pagination, SSE-S3 / SSE-KMS uploads and bucket encryption, CORS and logging configuration."""

from __future__ import annotations

import json

import pytest

from conftest import det_bytes, unique_bucket

MiB = 1 << 20


def j(r):
    return json.loads(r.stdout)


@pytest.fixture
def cli_bucket(clients):
    name = unique_bucket("clib")
    clients.aws("s3api", "create-bucket", "--bucket", name)
    yield name
    clients.aws("s3", "rb", f"s3://{name}", "--force", check=False)


def test_cli_bucket_settings(clients, cli_bucket, tmp_path):
    b = cli_bucket
    clients.aws("s3api", "put-bucket-tagging", "--bucket", b, "--tagging", "TagSet=[{Key=team,Value=storage}]")
    assert j(clients.aws("s3api", "get-bucket-tagging", "--bucket", b))["TagSet"] == [{"Key": "team", "Value": "storage"}]
    clients.aws("s3api", "delete-bucket-tagging", "--bucket", b)
    r = clients.aws("s3api", "get-bucket-tagging", "--bucket", b, check=False)
    assert r.returncode != 0 and b"NoSuchTagSet" in r.stderr

    cors = tmp_path / "cors.json"
    cors.write_text(json.dumps({"CORSRules": [{"AllowedOrigins": ["http://app.example"],
                                               "AllowedMethods": ["GET"]}]}))
    clients.aws("s3api", "put-bucket-cors", "--bucket", b, "--cors-configuration", f"file://{cors}")
    assert j(clients.aws("s3api", "get-bucket-cors", "--bucket", b))["CORSRules"][0]["AllowedOrigins"] == ["http://app.example"]
    clients.aws("s3api", "delete-bucket-cors", "--bucket", b)

    target = unique_bucket("clil")
    clients.aws("s3api", "create-bucket", "--bucket", target)
    try:
        status = json.dumps({"LoggingEnabled": {"TargetBucket": target, "TargetPrefix": "logs/"}})
        clients.aws("s3api", "put-bucket-logging", "--bucket", b, "--bucket-logging-status", status)
        got = j(clients.aws("s3api", "get-bucket-logging", "--bucket", b))
        assert got["LoggingEnabled"] == {"TargetBucket": target, "TargetPrefix": "logs/"}
        clients.aws("s3api", "put-bucket-logging", "--bucket", b, "--bucket-logging-status", "{}")
    finally:
        clients.aws("s3", "rb", f"s3://{target}", "--force", check=False)

    enc = json.dumps({"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    clients.aws("s3api", "put-bucket-encryption", "--bucket", b, "--server-side-encryption-configuration", enc)
    rule = j(clients.aws("s3api", "get-bucket-encryption", "--bucket", b))["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


@pytest.mark.strata_only(reason="KMS keys are made with the strata admin CLI")
def test_cli_sse_uploads_and_attributes(server, clients, cli_bucket, tmp_path):
    b = cli_bucket
    f = tmp_path / "f.bin"
    f.write_bytes(det_bytes("cli-sse", 9 * MiB))  # multipart with the CLI's 8 MiB threshold
    clients.aws("s3", "cp", str(f), f"s3://{b}/s3", "--sse", "AES256")
    assert j(clients.aws("s3api", "head-object", "--bucket", b, "--key", "s3"))["ServerSideEncryption"] == "AES256"
    name = "cli-" + unique_bucket("k")[-8:]
    k = server.admin_json("kms", "create", name)
    clients.aws("s3", "cp", str(f), f"s3://{b}/kms", "--sse", "aws:kms", "--sse-kms-key-id", f"alias/{name}")
    head = j(clients.aws("s3api", "head-object", "--bucket", b, "--key", "kms"))
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == k["arn"]
    out = tmp_path / "back.bin"
    clients.aws("s3", "cp", f"s3://{b}/kms", str(out))
    assert out.read_bytes() == f.read_bytes()
    attrs = j(clients.aws("s3api", "get-object-attributes", "--bucket", b, "--key", "kms",
                          "--object-attributes", "ETag", "ObjectSize", "ObjectParts", "StorageClass"))
    assert attrs["ObjectSize"] == 9 * MiB and attrs["StorageClass"] == "STANDARD"
    assert attrs["ObjectParts"]["TotalPartsCount"] == 2 and attrs["ETag"].endswith("-2")


@pytest.mark.strata_only(reason="moto lists every account's buckets")
def test_cli_list_buckets_pages(server, tmp_path):
    from conftest import Clients
    u = server.admin_json("user", "add", "cli" + unique_bucket("u")[-8:])
    c = Clients(server, tmp_path / "home", u["access_key"], u["secret_key"])
    names = sorted(unique_bucket("cp") for _ in range(3))
    for n in names:
        c.aws("s3api", "create-bucket", "--bucket", n)
    try:
        # the CLI follows ContinuationToken itself, one bucket per request
        r = j(c.aws("s3api", "list-buckets", "--page-size", "1"))
        assert [x["Name"] for x in r["Buckets"]] == names
        r = j(c.aws("s3api", "list-buckets", "--max-buckets", "2", "--no-paginate"))
        assert [x["Name"] for x in r["Buckets"]] == names[:2] and r["ContinuationToken"]
    finally:
        for n in names:
            c.aws("s3api", "delete-bucket", "--bucket", n, check=False)
