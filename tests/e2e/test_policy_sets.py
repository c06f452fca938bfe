"""Issue 14 leftovers: ForAnyValue:/ForAllValues: on s3:RequestObjectTagKeys, the anonymous
pre-body check seeing the write condition keys, s3:ExistingObjectTag/KEY on the tagging
operations, owner display names in listings, and the Public Access Block new buckets start
with."""

from __future__ import annotations

import json
import uuid

import pytest

from conftest import IS_MOTO, empty_bucket
from s3util import expect_error
from test_acl import anonymous

pytestmark = pytest.mark.skipif(IS_MOTO, reason="user names and ARNs are strata's")


@pytest.fixture
def fresh(s3):
    name = "pset-" + uuid.uuid4().hex[:12]
    s3.create_bucket(Bucket=name)
    yield name
    empty_bucket(s3, name)


def put_policy(s3, bucket, *statements):
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(
        {"Version": "2012-10-17", "Statement": list(statements)}))


def test_new_buckets_block_public_access(s3, fresh):
    pab = s3.get_public_access_block(Bucket=fresh)["PublicAccessBlockConfiguration"]
    assert pab == {"BlockPublicAcls": True, "IgnorePublicAcls": True,
                   "BlockPublicPolicy": True, "RestrictPublicBuckets": True}
    expect_error(s3.put_bucket_policy, "AccessDenied", 403, Bucket=fresh, Policy=json.dumps(
        {"Statement": {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                       "Resource": f"arn:aws:s3:::{fresh}/*"}}))
    other = "pset-" + uuid.uuid4().hex[:12]
    expect_error(s3.create_bucket, "InvalidBucketAclWithBlockPublicAccessError", 400,
                 Bucket=other, ObjectOwnership="ObjectWriter", ACL="public-read")
    s3.delete_public_access_block(Bucket=fresh)
    expect_error(s3.get_public_access_block, "NoSuchPublicAccessBlockConfiguration", 404,
                 Bucket=fresh)


def test_for_all_values_and_for_any_value_on_tag_keys(s3, bob, fresh):
    b3, _, bob_name = bob
    s3.delete_public_access_block(Bucket=fresh)
    arn = f"arn:aws:iam:::user/{bob_name}"
    put_policy(s3, fresh,
               {"Effect": "Allow", "Principal": {"AWS": arn}, "Action": "s3:PutObject",
                "Resource": f"arn:aws:s3:::{fresh}/*",
                "Condition": {"ForAllValues:StringEquals":
                              {"s3:RequestObjectTagKeys": ["team", "env"]}}},
               {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
                "Resource": f"arn:aws:s3:::{fresh}/*",
                "Condition": {"ForAnyValue:StringLike": {"s3:RequestObjectTagKeys": "secret*"}}})
    b3.put_object(Bucket=fresh, Key="a", Body=b"x", Tagging="team=blue&env=prod")
    # ForAllValues holds without tags
    b3.put_object(Bucket=fresh, Key="b", Body=b"x")
    expect_error(b3.put_object, "AccessDenied", 403, Bucket=fresh, Key="c", Body=b"x",
                 Tagging="team=blue&owner=bob")
    # ForAnyValue: one matching key denies, the owner too; no tags: no match
    expect_error(s3.put_object, "AccessDenied", 403, Bucket=fresh, Key="d", Body=b"x",
                 Tagging="env=a&secret-x=1")
    s3.put_object(Bucket=fresh, Key="d", Body=b"x")


def test_anonymous_pre_body_check_sees_write_keys(server, s3, fresh):
    anon = anonymous(server)
    s3.delete_public_access_block(Bucket=fresh)
    put_policy(s3, fresh, {"Effect": "Allow", "Principal": "*", "Action": "s3:PutObject",
                           "Resource": f"arn:aws:s3:::{fresh}/*",
                           "Condition": {"StringEquals": {
                               "s3:x-amz-server-side-encryption": "AES256",
                               "s3:RequestObjectTag/drop": "yes"}}})
    anon.put_object(Bucket=fresh, Key="ok", Body=b"data", ServerSideEncryption="AES256",
                    Tagging="drop=yes")
    assert s3.get_object(Bucket=fresh, Key="ok")["Body"].read() == b"data"
    for bad in [{"ServerSideEncryption": "AES256"}, {"Tagging": "drop=yes"},
                {"ServerSideEncryption": "AES256", "Tagging": "drop=no"}]:
        expect_error(anon.put_object, "AccessDenied", 403, Bucket=fresh, Key="bad",
                     Body=b"data", **bad)
    expect_error(s3.head_object, "404", 404, Bucket=fresh, Key="bad")


def test_existing_object_tag_on_tagging_operations(s3, bob, fresh):
    b3, _, bob_name = bob
    s3.delete_public_access_block(Bucket=fresh)
    s3.put_bucket_versioning(Bucket=fresh, VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket=fresh, Key="k", Body=b"1", Tagging="share=yes")["VersionId"]
    s3.put_object(Bucket=fresh, Key="k", Body=b"2", Tagging="share=no")
    arn = f"arn:aws:iam:::user/{bob_name}"
    put_policy(s3, fresh, {"Effect": "Allow", "Principal": {"AWS": arn},
                           "Action": ["s3:GetObjectTagging", "s3:GetObjectVersionTagging",
                                      "s3:PutObjectVersionTagging"],
                           "Resource": f"arn:aws:s3:::{fresh}/*",
                           "Condition": {"StringEquals": {"s3:ExistingObjectTag/share": "yes"}}})
    expect_error(b3.get_object_tagging, "AccessDenied", 403, Bucket=fresh, Key="k")
    tags = b3.get_object_tagging(Bucket=fresh, Key="k", VersionId=v1)["TagSet"]
    assert tags == [{"Key": "share", "Value": "yes"}]
    # by version id: the ...VersionTagging action, decided on that version's tags
    b3.put_object_tagging(Bucket=fresh, Key="k", VersionId=v1,
                          Tagging={"TagSet": [{"Key": "share", "Value": "no"}]})
    expect_error(b3.get_object_tagging, "AccessDenied", 403, Bucket=fresh, Key="k",
                 VersionId=v1)
    expect_error(b3.delete_object_tagging, "AccessDenied", 403, Bucket=fresh, Key="k")


def test_owner_display_names_in_listings(s3, bob, fresh):
    b3, bob_id, bob_name = bob
    me = s3.list_buckets()["Owner"]
    s3.delete_public_access_block(Bucket=fresh)
    s3.put_bucket_ownership_controls(Bucket=fresh, OwnershipControls={
        "Rules": [{"ObjectOwnership": "ObjectWriter"}]})
    s3.put_bucket_acl(Bucket=fresh, GrantWrite=f'id="{bob_id}"',
                      GrantFullControl=f'id="{me["ID"]}"')
    b3.put_object(Bucket=fresh, Key="bobs", Body=b"b")
    s3.put_object(Bucket=fresh, Key="mine", Body=b"m")
    up = b3.create_multipart_upload(Bucket=fresh, Key="up")["UploadId"]
    want = {"bobs": (bob_id, bob_name), "mine": (me["ID"], me["DisplayName"])}
    objs = s3.list_objects_v2(Bucket=fresh, FetchOwner=True)["Contents"]
    assert {o["Key"]: (o["Owner"]["ID"], o["Owner"]["DisplayName"]) for o in objs} == want
    vers = s3.list_object_versions(Bucket=fresh)["Versions"]
    assert {v["Key"]: (v["Owner"]["ID"], v["Owner"]["DisplayName"]) for v in vers} == want
    u = s3.list_multipart_uploads(Bucket=fresh)["Uploads"][0]
    assert (u["Owner"]["DisplayName"], u["Initiator"]["DisplayName"]) == (bob_name, bob_name)
    s3.abort_multipart_upload(Bucket=fresh, Key="up", UploadId=up)
