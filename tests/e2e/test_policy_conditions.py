"""Bucket policies, issue 14: the request condition keys filled at the gateway edge
(s3:x-amz-acl, s3:x-amz-server-side-encryption, s3:ExistingObjectTag/KEY,
s3:RequestObjectTag/KEY, s3:RequestObjectTagKeys, s3:if-none-match, aws:PrincipalArn) in the
classic policies of S3's "condition key examples", with the owner, a second user and anonymous
clients; what GetBucketPolicyStatus calls public; and a changed policy taking effect at once (the
parsed-policy cache is keyed on the stored document)."""

from __future__ import annotations

import json
import uuid

import pytest

from conftest import IS_MOTO, allow_public, empty_bucket
from s3util import expect_error
from test_acl import anonymous

pytestmark = pytest.mark.skipif(IS_MOTO, reason="user names and ARNs are strata's")


@pytest.fixture
def fresh(s3):
    name = "pol-" + uuid.uuid4().hex[:12]
    s3.create_bucket(Bucket=name)
    # the tests grant to Principal "*": lift the block that new buckets start with
    allow_public(s3, name, ownership=None)
    yield name
    empty_bucket(s3, name)


def put_policy(s3, bucket, *statements):
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(
        {"Version": "2012-10-17", "Statement": list(statements)}))


def test_deny_put_object_unless_sse_aes256(s3, bob, fresh):
    b3, _, bob_name = bob
    put_policy(s3, fresh,
               {"Sid": "DenyUnencrypted", "Effect": "Deny", "Principal": "*",
                "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{fresh}/*",
                "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": "AES256"}}},
               {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam:::user/{bob_name}"},
                "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{fresh}/*"})
    # the Deny binds the bucket owner too
    expect_error(s3.put_object, "AccessDenied", 403, Bucket=fresh, Key="plain", Body=b"x")
    expect_error(b3.put_object, "AccessDenied", 403, Bucket=fresh, Key="plain", Body=b"x")
    expect_error(s3.create_multipart_upload, "AccessDenied", 403, Bucket=fresh, Key="m")
    expect_error(s3.head_object, "404", 404, Bucket=fresh, Key="plain")
    s3.put_object(Bucket=fresh, Key="enc", Body=b"x", ServerSideEncryption="AES256")
    b3.put_object(Bucket=fresh, Key="enc-bob", Body=b"x", ServerSideEncryption="AES256")
    s3.create_multipart_upload(Bucket=fresh, Key="m", ServerSideEncryption="AES256")
    assert s3.head_object(Bucket=fresh, Key="enc")["ServerSideEncryption"] == "AES256"
    expect_error(s3.copy_object, "AccessDenied", 403, Bucket=fresh, Key="copy",
                 CopySource={"Bucket": fresh, "Key": "enc"})
    s3.copy_object(Bucket=fresh, Key="copy", CopySource={"Bucket": fresh, "Key": "enc"},
                   ServerSideEncryption="AES256")


def test_deny_writes_without_if_none_match(s3, bob, fresh):
    # (an upload's parts carry no If-None-Match: started before the policy)
    up = s3.create_multipart_upload(Bucket=fresh, Key="mp")["UploadId"]
    etag = s3.upload_part(Bucket=fresh, Key="mp", UploadId=up, PartNumber=1, Body=b"p")["ETag"]
    put_policy(s3, fresh, {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
                           "Resource": f"arn:aws:s3:::{fresh}/*",
                           "Condition": {"Null": {"s3:if-none-match": "true"}}})
    expect_error(s3.put_object, "AccessDenied", 403, Bucket=fresh, Key="k", Body=b"x")
    s3.put_object(Bucket=fresh, Key="k", Body=b"first", IfNoneMatch="*")
    # no overwrite: refused by the policy without the header, by the precondition with it
    expect_error(s3.put_object, "AccessDenied", 403, Bucket=fresh, Key="k", Body=b"second")
    expect_error(s3.put_object, "PreconditionFailed", 412, Bucket=fresh, Key="k",
                 Body=b"second", IfNoneMatch="*")
    assert s3.get_object(Bucket=fresh, Key="k")["Body"].read() == b"first"
    # CompleteMultipartUpload is a PutObject too
    parts = {"Parts": [{"PartNumber": 1, "ETag": etag}]}
    expect_error(s3.complete_multipart_upload, "AccessDenied", 403, Bucket=fresh, Key="mp",
                 UploadId=up, MultipartUpload=parts)
    s3.complete_multipart_upload(Bucket=fresh, Key="mp", UploadId=up, MultipartUpload=parts,
                                 IfNoneMatch="*")
    assert s3.get_object(Bucket=fresh, Key="mp")["Body"].read() == b"p"


def test_allow_get_object_only_on_objects_tagged_public(server, s3, bob, fresh):
    b3, _, _ = bob
    anon = anonymous(server)
    s3.put_object(Bucket=fresh, Key="open", Body=b"O", Tagging="public=yes")
    s3.put_object(Bucket=fresh, Key="closed", Body=b"C", Tagging="public=no")
    s3.put_object(Bucket=fresh, Key="untagged", Body=b"U")
    put_policy(s3, fresh, {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                           "Resource": f"arn:aws:s3:::{fresh}/*",
                           "Condition": {"StringEquals": {"s3:ExistingObjectTag/public": "yes"}}})
    for c in (anon, b3):
        assert c.get_object(Bucket=fresh, Key="open")["Body"].read() == b"O"
        expect_error(c.get_object, "AccessDenied", 403, Bucket=fresh, Key="closed")
        expect_error(c.get_object, "AccessDenied", 403, Bucket=fresh, Key="untagged")
    # retagging opens and closes
    s3.put_object_tagging(Bucket=fresh, Key="closed",
                          Tagging={"TagSet": [{"Key": "public", "Value": "yes"}]})
    assert anon.get_object(Bucket=fresh, Key="closed")["Body"].read() == b"C"
    s3.delete_object_tagging(Bucket=fresh, Key="open")
    expect_error(anon.get_object, "AccessDenied", 403, Bucket=fresh, Key="open")
    # a tag condition is not a fixed principal: the policy is public
    assert s3.get_bucket_policy_status(Bucket=fresh)["PolicyStatus"]["IsPublic"] is True


def test_request_object_tags_and_canned_acl_conditions(s3, bob, fresh):
    b3, bob_id, bob_name = bob
    s3.put_bucket_ownership_controls(Bucket=fresh, OwnershipControls={
        "Rules": [{"ObjectOwnership": "BucketOwnerPreferred"}]})
    bob_arn = f"arn:aws:iam:::user/{bob_name}"
    put_policy(s3, fresh,
               {"Sid": "BobWritesBlueHandsOver", "Effect": "Allow", "Principal": {"AWS": bob_arn},
                "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{fresh}/*",
                "Condition": {"StringEquals": {"s3:RequestObjectTag/team": "blue",
                                               "s3:x-amz-acl": "bucket-owner-full-control"}}},
               {"Effect": "Allow", "Principal": {"AWS": bob_arn},
                "Action": "s3:PutObjectTagging", "Resource": f"arn:aws:s3:::{fresh}/*",
                "Condition": {"StringEquals": {"s3:RequestObjectTagKeys": "team"}}})
    ok = {"ACL": "bucket-owner-full-control", "Tagging": "team=blue"}
    b3.put_object(Bucket=fresh, Key="blue", Body=b"b", **ok)
    assert s3.get_object_acl(Bucket=fresh, Key="blue")["Owner"]["ID"] != bob_id
    for bad in [{"ACL": "bucket-owner-full-control", "Tagging": "team=red"},
                {"ACL": "bucket-owner-full-control"},
                {"Tagging": "team=blue"},
                {"ACL": "private", "Tagging": "team=blue"}]:
        expect_error(b3.put_object, "AccessDenied", 403, Bucket=fresh, Key="bad", Body=b"x",
                     **bad)
    expect_error(s3.head_object, "404", 404, Bucket=fresh, Key="bad")
    # PutObjectTagging: the tag keys of the body
    b3.put_object_tagging(Bucket=fresh, Key="blue",
                          Tagging={"TagSet": [{"Key": "team", "Value": "green"}]})
    expect_error(b3.put_object_tagging, "AccessDenied", 403, Bucket=fresh, Key="blue",
                 Tagging={"TagSet": [{"Key": "owner", "Value": "bob"}]})
    assert s3.get_object_tagging(Bucket=fresh, Key="blue")["TagSet"] == [
        {"Key": "team", "Value": "green"}]


def test_principal_arn_and_what_policy_status_calls_public(server, s3, bob, fresh):
    b3, bob_id, bob_name = bob
    anon = anonymous(server)
    s3.put_object(Bucket=fresh, Key="k", Body=b"K")
    obj = f"arn:aws:s3:::{fresh}/*"
    # aws:PrincipalArn is arn:aws:iam::<canonical id>:user/<name>
    put_policy(s3, fresh, {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                           "Resource": obj, "Condition": {
                               "ArnLike": {"aws:PrincipalArn": f"arn:aws:iam::*:user/{bob_name}"}}})
    assert b3.get_object(Bucket=fresh, Key="k")["Body"].read() == b"K"
    expect_error(anon.get_object, "AccessDenied", 403, Bucket=fresh, Key="k")
    # a wildcard is not a fixed principal
    assert s3.get_bucket_policy_status(Bucket=fresh)["PolicyStatus"]["IsPublic"] is True
    put_policy(s3, fresh, {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                           "Resource": obj, "Condition": {"ArnEquals": {
                               "aws:PrincipalArn": f"arn:aws:iam::{bob_id}:user/{bob_name}"}}})
    assert s3.get_bucket_policy_status(Bucket=fresh)["PolicyStatus"]["IsPublic"] is False
    assert b3.get_object(Bucket=fresh, Key="k")["Body"].read() == b"K"
    # the same ARN as a Principal
    put_policy(s3, fresh, {"Effect": "Allow",
                           "Principal": {"AWS": f"arn:aws:iam::{bob_id}:user/{bob_name}"},
                           "Action": "s3:GetObject", "Resource": obj})
    assert b3.get_object(Bucket=fresh, Key="k")["Body"].read() == b"K"
    assert s3.get_bucket_policy_status(Bucket=fresh)["PolicyStatus"]["IsPublic"] is False
    # S3's "public": Principal * unless a condition pins fixed principals or sources
    for cond, public in [
        ({"IpAddress": {"aws:SourceIp": "0.0.0.0/0"}}, True),
        ({"IpAddress": {"aws:SourceIp": "10.1.0.0/16"}}, False),
        ({"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, True),
        ({"Bool": {"aws:SecureTransport": "true"}}, True),
        ({"StringEquals": {"aws:username": bob_name}}, False),
        ({"StringLike": {"aws:username": "bob*"}}, True),
        ({"StringEqualsIfExists": {"aws:username": bob_name}}, True),
        ({"StringEquals": {"aws:SourceAccount": "123456789012"}}, False),
    ]:
        put_policy(s3, fresh, {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                               "Resource": obj, "Condition": cond})
        assert s3.get_bucket_policy_status(Bucket=fresh)["PolicyStatus"]["IsPublic"] is public, \
            cond


def test_a_changed_policy_takes_effect_at_once(server, s3, fresh):
    anon = anonymous(server)
    s3.put_object(Bucket=fresh, Key="k", Body=b"K")
    allow = {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
             "Resource": f"arn:aws:s3:::{fresh}/*"}
    for _ in range(3):
        put_policy(s3, fresh, allow)
        assert anon.get_object(Bucket=fresh, Key="k")["Body"].read() == b"K"
        put_policy(s3, fresh, dict(allow, Resource=f"arn:aws:s3:::{fresh}/other/*"))
        expect_error(anon.get_object, "AccessDenied", 403, Bucket=fresh, Key="k")
    put_policy(s3, fresh, allow)
    assert anon.get_object(Bucket=fresh, Key="k")["Body"].read() == b"K"
    s3.delete_bucket_policy(Bucket=fresh)
    expect_error(anon.get_object, "AccessDenied", 403, Bucket=fresh, Key="k")
