"""The server-side-encryption API (issue 14): SSE-S3 answered everywhere, SSE-KMS with
operator-managed keys (`strata admin kms`), SSE-C with customer keys that are never stored, and
bucket default encryption. Every object is encrypted at rest whatever the mode; these tests check
what clients and auditors see, and which keys a read needs."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import pytest

from conftest import IS_MOTO, det_bytes, empty_bucket, make_s3, unique_bucket
from s3util import expect_error

MiB = 1 << 20
pytestmark = pytest.mark.strata_only(reason="KMS keys are made with the strata admin CLI; moto does not enforce SSE-C keys")


def sse(resp):
    h = resp["ResponseMetadata"]["HTTPHeaders"]
    return h.get("x-amz-server-side-encryption")


# ---- SSE-S3 --------------------------------------------------------------------------------------
def test_sse_s3_everywhere(s3, bucket):
    r = s3.put_object(Bucket=bucket, Key="a", Body=b"x", ServerSideEncryption="AES256")
    assert r["ServerSideEncryption"] == "AES256"
    # as S3 today: objects written without the header are SSE-S3 too, and say so
    r = s3.put_object(Bucket=bucket, Key="b", Body=b"y")
    assert r["ServerSideEncryption"] == "AES256"
    for k in ("a", "b"):
        assert s3.get_object(Bucket=bucket, Key=k)["ServerSideEncryption"] == "AES256"
        assert s3.head_object(Bucket=bucket, Key=k)["ServerSideEncryption"] == "AES256"
    c = s3.copy_object(Bucket=bucket, Key="c", CopySource={"Bucket": bucket, "Key": "a"},
                       ServerSideEncryption="AES256")
    assert c["ServerSideEncryption"] == "AES256"
    up = s3.create_multipart_upload(Bucket=bucket, Key="m", ServerSideEncryption="AES256")
    assert up["ServerSideEncryption"] == "AES256"
    p = s3.upload_part(Bucket=bucket, Key="m", UploadId=up["UploadId"], PartNumber=1, Body=b"p")
    assert p["ServerSideEncryption"] == "AES256"
    done = s3.complete_multipart_upload(Bucket=bucket, Key="m", UploadId=up["UploadId"],
                                        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p["ETag"]}]})
    assert done["ServerSideEncryption"] == "AES256"
    assert s3.head_object(Bucket=bucket, Key="m")["ServerSideEncryption"] == "AES256"
    # an unknown algorithm is refused before anything is stored
    expect_error(s3.put_object, "InvalidArgument", 400, Bucket=bucket, Key="bad", Body=b"x",
                 ServerSideEncryption="AES512")
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="bad")


# ---- SSE-KMS -------------------------------------------------------------------------------------
def test_sse_kms_with_operator_keys(server, s3, bucket):
    name = "app-" + os.urandom(4).hex()
    k = server.admin_json("kms", "create", name)
    assert k["name"] == name and k["enabled"] and k["arn"].endswith("key/" + k["id"])
    listed = server.admin("kms", "list")
    assert listed.returncode == 0 and k["id"] in listed.stdout and "wrapped" not in listed.stdout
    ctx = base64.b64encode(b'{"project":"strata"}').decode()
    data = det_bytes("kms", 300_000)
    for ref in (f"alias/{name}", k["id"], k["arn"]):
        r = s3.put_object(Bucket=bucket, Key="k", Body=data, ServerSideEncryption="aws:kms",
                          SSEKMSKeyId=ref, SSEKMSEncryptionContext=ctx, BucketKeyEnabled=True)
        assert r["ServerSideEncryption"] == "aws:kms" and r["SSEKMSKeyId"] == k["arn"]
        assert r["BucketKeyEnabled"] is True
    g = s3.get_object(Bucket=bucket, Key="k")
    assert g["Body"].read() == data
    assert g["ServerSideEncryption"] == "aws:kms" and g["SSEKMSKeyId"] == k["arn"]
    assert s3.head_object(Bucket=bucket, Key="k")["SSEKMSKeyId"] == k["arn"]
    # a copy to SSE-KMS from SSE-S3 and back
    s3.put_object(Bucket=bucket, Key="plain", Body=b"plain")
    c = s3.copy_object(Bucket=bucket, Key="plain", CopySource={"Bucket": bucket, "Key": "plain"},
                       ServerSideEncryption="aws:kms", SSEKMSKeyId=k["id"])
    assert c["SSEKMSKeyId"] == k["arn"]
    assert s3.get_object(Bucket=bucket, Key="plain")["Body"].read() == b"plain"
    # unknown keys are refused as S3 does
    expect_error(s3.put_object, "KMS.NotFoundException", 400, Bucket=bucket, Key="x", Body=b"x",
                 ServerSideEncryption="aws:kms", SSEKMSKeyId="alias/no-such-key")
    # a disabled key refuses new writes and reads of what it protects
    server.admin_json("kms", "disable", name)
    expect_error(s3.put_object, "KMS.DisabledException", 400, Bucket=bucket, Key="x", Body=b"x",
                 ServerSideEncryption="aws:kms", SSEKMSKeyId=k["id"])
    expect_error(s3.get_object, "KMS.DisabledException", 400, Bucket=bucket, Key="k")
    server.admin_json("kms", "enable", name)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == data
    # aws:kms without a key id uses the default key aws/s3 (made on first use)
    r = s3.put_object(Bucket=bucket, Key="d", Body=b"d", ServerSideEncryption="aws:kms")
    default = [x for x in server.admin_json("kms", "list") if x["name"] == "aws/s3"]
    assert len(default) == 1 and r["SSEKMSKeyId"] == default[0]["arn"]
    # multipart under a KMS key
    up = s3.create_multipart_upload(Bucket=bucket, Key="mk", ServerSideEncryption="aws:kms",
                                    SSEKMSKeyId=k["id"])
    parts = [det_bytes("mk1", 5 * MiB), b"tail"]
    listed = []
    for i, part in enumerate(parts, 1):
        p = s3.upload_part(Bucket=bucket, Key="mk", UploadId=up["UploadId"], PartNumber=i, Body=part)
        assert p["SSEKMSKeyId"] == k["arn"]
        listed.append({"PartNumber": i, "ETag": p["ETag"]})
    done = s3.complete_multipart_upload(Bucket=bucket, Key="mk", UploadId=up["UploadId"],
                                        MultipartUpload={"Parts": listed})
    assert done["SSEKMSKeyId"] == k["arn"]
    assert s3.get_object(Bucket=bucket, Key="mk")["Body"].read() == b"".join(parts)


def test_bucket_default_encryption(server, s3, bucket):
    cfg = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    assert cfg["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    name = "def-" + os.urandom(4).hex()
    k = server.admin_json("kms", "create", name)
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": f"alias/{name}"},
        "BucketKeyEnabled": True}]})
    cfg = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert cfg["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": k["arn"]}
    assert cfg["BucketKeyEnabled"] is True
    r = s3.put_object(Bucket=bucket, Key="o", Body=b"default")
    assert r["ServerSideEncryption"] == "aws:kms" and r["SSEKMSKeyId"] == k["arn"]
    # an explicit header still wins
    assert s3.put_object(Bucket=bucket, Key="p", Body=b"x", ServerSideEncryption="AES256")["ServerSideEncryption"] == "AES256"
    expect_error(s3.put_bucket_encryption, "KMS.NotFoundException", 400, Bucket=bucket,
                 ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": {
                     "SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "alias/none-such"}}]})
    s3.delete_bucket_encryption(Bucket=bucket)
    assert s3.put_object(Bucket=bucket, Key="q", Body=b"x")["ServerSideEncryption"] == "AES256"
    assert s3.get_object(Bucket=bucket, Key="o")["Body"].read() == b"default"


# ---- SSE-C ---------------------------------------------------------------------------------------
def test_sse_c_refused_over_plain_http(s3, bucket):
    expect_error(s3.put_object, "InvalidRequest", 400, Bucket=bucket, Key="c", Body=b"x",
                 SSECustomerAlgorithm="AES256", SSECustomerKey=os.urandom(32))
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="c")


@pytest.fixture(scope="module")
def sse_c_server(tmp_path_factory):
    import conftest
    s = conftest._start(tmp_path_factory.mktemp("ssec"), "ssec",
                        extra_args=["--allow-sse-c-over-http"])
    yield s
    conftest._finish(s)


def md5b64(b: bytes) -> str:
    return base64.b64encode(hashlib.md5(b).digest()).decode()


def test_sse_c_needs_the_key_and_never_stores_it(sse_c_server):
    s3 = make_s3(sse_c_server.endpoint, sse_c_server.access_key, sse_c_server.secret_key)
    bucket = unique_bucket("ssec")
    s3.create_bucket(Bucket=bucket)
    key, other = os.urandom(32), os.urandom(32)
    data = det_bytes("ssec", 5 * MiB + 1000)
    r = s3.put_object(Bucket=bucket, Key="c", Body=data, SSECustomerAlgorithm="AES256", SSECustomerKey=key)
    assert r["SSECustomerAlgorithm"] == "AES256" and r["SSECustomerKeyMD5"] == md5b64(key)
    assert "ServerSideEncryption" not in r
    # the key again on GET and HEAD
    expect_error(s3.get_object, "InvalidRequest", 400, Bucket=bucket, Key="c")
    expect_error(s3.head_object, "400", 400, Bucket=bucket, Key="c")
    expect_error(s3.get_object, "AccessDenied", 403, Bucket=bucket, Key="c",
                 SSECustomerAlgorithm="AES256", SSECustomerKey=other)
    g = s3.get_object(Bucket=bucket, Key="c", SSECustomerAlgorithm="AES256", SSECustomerKey=key)
    assert g["Body"].read() == data and g["SSECustomerKeyMD5"] == md5b64(key)
    h = s3.head_object(Bucket=bucket, Key="c", SSECustomerAlgorithm="AES256", SSECustomerKey=key)
    assert h["SSECustomerAlgorithm"] == "AES256" and h["ContentLength"] == len(data)
    r = s3.get_object(Bucket=bucket, Key="c", Range="bytes=100-199", SSECustomerAlgorithm="AES256",
                      SSECustomerKey=key)
    assert r["Body"].read() == data[100:200]
    # a key MD5 that does not match the key
    expect_error(s3.put_object, "InvalidArgument", 400, Bucket=bucket, Key="bad", Body=b"x",
                 SSECustomerAlgorithm="AES256", SSECustomerKey=base64.b64encode(key).decode(),
                 SSECustomerKeyMD5=md5b64(other))
    # SSE-C headers on an object that has no customer key
    s3.put_object(Bucket=bucket, Key="plain", Body=b"plain")
    expect_error(s3.get_object, "InvalidRequest", 400, Bucket=bucket, Key="plain",
                 SSECustomerAlgorithm="AES256", SSECustomerKey=key)
    # copy: the source key in the copy-source headers, the copy under another key
    src = {"Bucket": bucket, "Key": "c"}
    expect_error(s3.copy_object, "InvalidRequest", 400, Bucket=bucket, Key="c2", CopySource=src)
    s3.copy_object(Bucket=bucket, Key="c2", CopySource=src, CopySourceSSECustomerAlgorithm="AES256",
                   CopySourceSSECustomerKey=key, SSECustomerAlgorithm="AES256", SSECustomerKey=other)
    assert s3.get_object(Bucket=bucket, Key="c2", SSECustomerAlgorithm="AES256",
                         SSECustomerKey=other)["Body"].read() == data
    s3.copy_object(Bucket=bucket, Key="c3", CopySource=src, CopySourceSSECustomerAlgorithm="AES256",
                   CopySourceSSECustomerKey=key)
    c3 = s3.get_object(Bucket=bucket, Key="c3")
    assert c3["Body"].read() == data and c3["ServerSideEncryption"] == "AES256"
    # multipart: every part carries the key; UploadPartCopy the source's too
    up = s3.create_multipart_upload(Bucket=bucket, Key="m", SSECustomerAlgorithm="AES256", SSECustomerKey=key)
    uid = up["UploadId"]
    expect_error(s3.upload_part, "InvalidRequest", 400, Bucket=bucket, Key="m", UploadId=uid,
                 PartNumber=1, Body=b"x")
    p1 = s3.upload_part_copy(Bucket=bucket, Key="m", UploadId=uid, PartNumber=1, CopySource=src,
                             CopySourceRange=f"bytes=0-{5 * MiB - 1}", CopySourceSSECustomerAlgorithm="AES256",
                             CopySourceSSECustomerKey=key, SSECustomerAlgorithm="AES256",
                             SSECustomerKey=key)
    p2 = s3.upload_part(Bucket=bucket, Key="m", UploadId=uid, PartNumber=2, Body=b"tail",
                        SSECustomerAlgorithm="AES256", SSECustomerKey=key)
    s3.complete_multipart_upload(Bucket=bucket, Key="m", UploadId=uid, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": p1["CopyPartResult"]["ETag"]}, {"PartNumber": 2, "ETag": p2["ETag"]}]})
    expect_error(s3.get_object, "InvalidRequest", 400, Bucket=bucket, Key="m")
    got = s3.get_object(Bucket=bucket, Key="m", SSECustomerAlgorithm="AES256", SSECustomerKey=key)
    assert got["Body"].read() == data[:5 * MiB] + b"tail"
    # the key (raw or base64) is nowhere under the data directory: not in RocksDB, not in logs
    needles = [key, base64.b64encode(key), other, base64.b64encode(other)]
    for path in Path(sse_c_server.workdir).rglob("*"):
        if path.is_file():
            blob = path.read_bytes()
            for n in needles:
                assert n not in blob, f"customer key found in {path}"
    empty_bucket(s3, bucket)
