"""Access control, issue 14: Public Access Block and Object Ownership, through boto3 (and the AWS
CLI), with the bucket owner, a second user and anonymous (unsigned) clients, allowed and denied.

- Put/Get/DeletePublicAccessBlock (`NoSuchPublicAccessBlockConfiguration` when none):
  BlockPublicAcls refuses public ACLs (403, nothing stored), IgnorePublicAcls makes the stored
  public grants count for nothing, BlockPublicPolicy refuses a public policy (403),
  RestrictPublicBuckets lets a public policy allow only the bucket owner.
- Put/Get/DeleteBucketOwnershipControls (`OwnershipControlsNotFoundError` when none) and
  CreateBucket's `x-amz-object-ownership`: new buckets are BucketOwnerEnforced (S3 since 2023),
  which disables ACLs (`AccessControlListNotSupported`) and makes every object the bucket
  owner's; BucketOwnerPreferred gives the bucket owner what is written with
  bucket-owner-full-control; ObjectWriter keeps the writer as owner."""

from __future__ import annotations

import json
import uuid

import pytest

from conftest import IS_MOTO, Clients, allow_public, create_public_bucket, empty_bucket
from s3util import expect_error
from test_acl import ALL_USERS, AUTH_USERS, anonymous, grants_of

pytestmark = pytest.mark.skipif(IS_MOTO, reason="canonical ids and user names are strata's")

OBJECT_WRITER = {"Rules": [{"ObjectOwnership": "ObjectWriter"}]}


@pytest.fixture
def fresh(s3):
    name = "own-" + uuid.uuid4().hex[:12]
    yield name
    empty_bucket(s3, name)


def pab(**on) -> dict:
    keys = ["BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"]
    return {k: bool(on.get(k)) for k in keys}


def public_get_policy(bucket: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
         "Resource": f"arn:aws:s3:::{bucket}/*"}]})


def test_public_access_block_api_and_block_public_acls(server, s3, bob, fresh, tmp_path):
    b3, bob_id, _ = bob
    anon = anonymous(server)
    me = s3.list_buckets()["Owner"]["ID"]
    s3.create_bucket(Bucket=fresh, ObjectOwnership="ObjectWriter")
    # a new bucket blocks public access, all four settings (S3 since April 2023)
    assert s3.get_public_access_block(Bucket=fresh)["PublicAccessBlockConfiguration"] == pab(
        BlockPublicAcls=True, IgnorePublicAcls=True, BlockPublicPolicy=True,
        RestrictPublicBuckets=True)
    s3.delete_public_access_block(Bucket=fresh)
    expect_error(s3.get_public_access_block, "NoSuchPublicAccessBlockConfiguration", 404,
                 Bucket=fresh)
    s3.put_public_access_block(Bucket=fresh,
                               PublicAccessBlockConfiguration={"BlockPublicAcls": True})
    assert s3.get_public_access_block(Bucket=fresh)["PublicAccessBlockConfiguration"] == pab(
        BlockPublicAcls=True)
    # owner operations: not bob's, not anonymous
    for c in (b3, anon):
        expect_error(c.get_public_access_block, "AccessDenied", 403, Bucket=fresh)
        expect_error(c.delete_public_access_block, "AccessDenied", 403, Bucket=fresh)
    expect_error(b3.put_public_access_block, "AccessDenied", 403, Bucket=fresh,
                 PublicAccessBlockConfiguration=pab())
    # public ACLs refused on every write that carries one; nothing is stored
    expect_error(s3.put_object, "AccessDenied", 403, Bucket=fresh, Key="p", Body=b"x",
                 ACL="public-read")
    expect_error(s3.put_object, "AccessDenied", 403, Bucket=fresh, Key="p", Body=b"x",
                 GrantRead=f'uri="{AUTH_USERS}"')
    expect_error(s3.head_object, "404", 404, Bucket=fresh, Key="p")
    expect_error(s3.create_multipart_upload, "AccessDenied", 403, Bucket=fresh, Key="m",
                 ACL="authenticated-read")
    assert s3.list_multipart_uploads(Bucket=fresh).get("Uploads", []) == []
    s3.put_object(Bucket=fresh, Key="k", Body=b"mine", ACL="private")
    expect_error(s3.copy_object, "AccessDenied", 403, Bucket=fresh, Key="c",
                 CopySource={"Bucket": fresh, "Key": "k"}, ACL="public-read")
    expect_error(s3.put_object_acl, "AccessDenied", 403, Bucket=fresh, Key="k",
                 ACL="public-read")
    expect_error(s3.put_bucket_acl, "AccessDenied", 403, Bucket=fresh, ACL="public-read-write")
    expect_error(s3.put_bucket_acl, "AccessDenied", 403, Bucket=fresh, AccessControlPolicy={
        "Owner": {"ID": me},
        "Grants": [{"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"}]})
    assert grants_of(s3.get_object_acl(Bucket=fresh, Key="k")) == {(me, "FULL_CONTROL")}
    assert grants_of(s3.get_bucket_acl(Bucket=fresh)) == {(me, "FULL_CONTROL")}
    expect_error(anon.get_object, "AccessDenied", 403, Bucket=fresh, Key="k")
    # a grant to a user is not public
    s3.put_object_acl(Bucket=fresh, Key="k", GrantRead=f'id="{bob_id}"',
                      GrantFullControl=f'id="{me}"')
    assert b3.get_object(Bucket=fresh, Key="k")["Body"].read() == b"mine"
    # removed: public ACLs are accepted again
    s3.delete_public_access_block(Bucket=fresh)
    expect_error(s3.get_public_access_block, "NoSuchPublicAccessBlockConfiguration", 404,
                 Bucket=fresh)
    s3.put_object_acl(Bucket=fresh, Key="k", ACL="public-read")
    assert anon.get_object(Bucket=fresh, Key="k")["Body"].read() == b"mine"
    # the AWS CLI speaks the same API
    cli = Clients(server, tmp_path / "home")
    r = cli.aws("s3api", "put-public-access-block", "--bucket", fresh,
                "--public-access-block-configuration",
                "BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,"
                "RestrictPublicBuckets=true")
    assert r.returncode == 0, r.stderr
    r = cli.aws("s3api", "get-public-access-block", "--bucket", fresh)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["PublicAccessBlockConfiguration"] == pab(
        BlockPublicAcls=1, IgnorePublicAcls=1, BlockPublicPolicy=1, RestrictPublicBuckets=1)
    expect_error(anon.get_object, "AccessDenied", 403, Bucket=fresh, Key="k")


def test_ignore_public_acls_makes_public_grants_count_for_nothing(server, s3, bob, fresh):
    b3, bob_id, _ = bob
    anon = anonymous(server)
    me = s3.list_buckets()["Owner"]["ID"]
    create_public_bucket(s3, fresh, "public-read")
    s3.put_object(Bucket=fresh, Key="pub", Body=b"P", ACL="public-read")
    s3.put_object(Bucket=fresh, Key="members", Body=b"M", ACL="authenticated-read")
    s3.put_object(Bucket=fresh, Key="bobs", Body=b"B", GrantRead=f'id="{bob_id}"')
    assert anon.get_object(Bucket=fresh, Key="pub")["Body"].read() == b"P"
    assert len(anon.list_objects_v2(Bucket=fresh)["Contents"]) == 3
    assert b3.get_object(Bucket=fresh, Key="members")["Body"].read() == b"M"
    s3.put_public_access_block(Bucket=fresh,
                               PublicAccessBlockConfiguration=pab(IgnorePublicAcls=True))
    expect_error(anon.get_object, "AccessDenied", 403, Bucket=fresh, Key="pub")
    expect_error(anon.list_objects_v2, "AccessDenied", 403, Bucket=fresh)
    expect_error(b3.get_object, "AccessDenied", 403, Bucket=fresh, Key="members")
    expect_error(b3.list_objects_v2, "AccessDenied", 403, Bucket=fresh)
    # a grant to a user still counts, and the owner is not affected
    assert b3.get_object(Bucket=fresh, Key="bobs")["Body"].read() == b"B"
    assert s3.get_object(Bucket=fresh, Key="pub")["Body"].read() == b"P"
    # the ACLs are kept, and count again once the setting is gone
    assert (ALL_USERS, "READ") in grants_of(s3.get_object_acl(Bucket=fresh, Key="pub"))
    assert (ALL_USERS, "READ") in grants_of(s3.get_bucket_acl(Bucket=fresh))
    assert (me, "FULL_CONTROL") in grants_of(s3.get_bucket_acl(Bucket=fresh))
    s3.delete_public_access_block(Bucket=fresh)
    assert anon.get_object(Bucket=fresh, Key="pub")["Body"].read() == b"P"


def test_block_public_policy_and_restrict_public_buckets(server, s3, bob, fresh):
    b3, bob_id, bob_name = bob
    anon = anonymous(server)
    s3.create_bucket(Bucket=fresh)
    s3.put_object(Bucket=fresh, Key="k", Body=b"data")
    s3.put_public_access_block(Bucket=fresh,
                               PublicAccessBlockConfiguration=pab(BlockPublicPolicy=True))
    expect_error(s3.put_bucket_policy, "AccessDenied", 403, Bucket=fresh,
                 Policy=public_get_policy(fresh))
    expect_error(s3.get_bucket_policy, "NoSuchBucketPolicy", 404, Bucket=fresh)
    # policies S3 does not call public are accepted: a fixed source range, a named user
    local = {"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                            "Resource": f"arn:aws:s3:::{fresh}/*",
                            "Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}}]}
    s3.put_bucket_policy(Bucket=fresh, Policy=json.dumps(local))
    assert s3.get_bucket_policy_status(Bucket=fresh)["PolicyStatus"]["IsPublic"] is False
    assert anon.get_object(Bucket=fresh, Key="k")["Body"].read() == b"data"
    to_bob = {"Statement": [{"Effect": "Allow",
                             "Principal": {"AWS": f"arn:aws:iam:::user/{bob_name}"},
                             "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{fresh}/*"}]}
    s3.put_bucket_policy(Bucket=fresh, Policy=json.dumps(to_bob))
    # RestrictPublicBuckets: a public policy allows only the owner's account, and blocks even
    # its statements to named other users
    s3.put_public_access_block(Bucket=fresh,
                               PublicAccessBlockConfiguration=pab(RestrictPublicBuckets=True))
    both = {"Statement": json.loads(public_get_policy(fresh))["Statement"] + to_bob["Statement"]}
    s3.put_bucket_policy(Bucket=fresh, Policy=json.dumps(both))
    assert s3.get_bucket_policy_status(Bucket=fresh)["PolicyStatus"]["IsPublic"] is True
    expect_error(anon.get_object, "AccessDenied", 403, Bucket=fresh, Key="k")
    expect_error(b3.get_object, "AccessDenied", 403, Bucket=fresh, Key="k")
    assert s3.get_object(Bucket=fresh, Key="k")["Body"].read() == b"data"
    # a non-public policy is not restricted
    s3.put_bucket_policy(Bucket=fresh, Policy=json.dumps(to_bob))
    assert b3.get_object(Bucket=fresh, Key="k")["Body"].read() == b"data"
    s3.put_bucket_policy(Bucket=fresh, Policy=json.dumps(both))
    s3.delete_public_access_block(Bucket=fresh)
    assert anon.get_object(Bucket=fresh, Key="k")["Body"].read() == b"data"
    assert b3.get_object(Bucket=fresh, Key="k")["Body"].read() == b"data"


def test_new_buckets_enforce_bucket_owner_ownership_acls_disabled(server, s3, bob, fresh):
    b3, bob_id, bob_name = bob
    anon = anonymous(server)
    me = s3.list_buckets()["Owner"]["ID"]
    s3.create_bucket(Bucket=fresh)
    assert s3.get_bucket_ownership_controls(Bucket=fresh)["OwnershipControls"] == {
        "Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    for c in (b3, anon):
        expect_error(c.get_bucket_ownership_controls, "AccessDenied", 403, Bucket=fresh)
    expect_error(b3.put_bucket_ownership_controls, "AccessDenied", 403, Bucket=fresh,
                 OwnershipControls=OBJECT_WRITER)
    # ACLs other than the bucket owner's FULL_CONTROL: 400, nothing stored
    expect_error(s3.put_object, "AccessControlListNotSupported", 400, Bucket=fresh, Key="p",
                 Body=b"x", ACL="public-read")
    expect_error(s3.put_object, "AccessControlListNotSupported", 400, Bucket=fresh, Key="p",
                 Body=b"x", GrantRead=f'id="{bob_id}"')
    expect_error(s3.head_object, "404", 404, Bucket=fresh, Key="p")
    expect_error(s3.put_bucket_acl, "AccessControlListNotSupported", 400, Bucket=fresh,
                 ACL="public-read")
    s3.put_object(Bucket=fresh, Key="k", Body=b"x", ACL="bucket-owner-full-control")
    s3.put_object(Bucket=fresh, Key="k2", Body=b"x", ACL="private")
    expect_error(s3.put_object_acl, "AccessControlListNotSupported", 400, Bucket=fresh,
                 Key="k", ACL="public-read")
    expect_error(s3.create_multipart_upload, "AccessControlListNotSupported", 400,
                 Bucket=fresh, Key="m", ACL="authenticated-read")
    s3.put_bucket_acl(Bucket=fresh, ACL="private")
    # CreateBucket with an ACL under BucketOwnerEnforced (the default too)
    other = "own-" + uuid.uuid4().hex[:12]
    for kw in [{}, {"ObjectOwnership": "BucketOwnerEnforced"}]:
        expect_error(s3.create_bucket, "InvalidBucketAclWithObjectOwnership", 400, Bucket=other,
                     ACL="public-read", **kw)
    expect_error(s3.create_bucket, "InvalidArgument", 400, Bucket=other,
                 ObjectOwnership="Whoever")
    expect_error(s3.head_bucket, "404", 404, Bucket=other)
    # bob writes through a policy (no ACL can grant here): the object is the bucket owner's
    s3.put_bucket_policy(Bucket=fresh, Policy=json.dumps({"Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam:::user/{bob_name}"},
         "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{fresh}/*"}]}))
    b3.put_object(Bucket=fresh, Key="from-bob", Body=b"bob's bytes")
    acl = s3.get_object_acl(Bucket=fresh, Key="from-bob")
    assert acl["Owner"]["ID"] == me and grants_of(acl) == {(me, "FULL_CONTROL")}
    assert s3.get_object(Bucket=fresh, Key="from-bob")["Body"].read() == b"bob's bytes"
    expect_error(b3.get_object, "AccessDenied", 403, Bucket=fresh, Key="from-bob")
    assert {o["Key"]: o["Owner"]["ID"] for o in s3.list_objects_v2(
        Bucket=fresh, FetchOwner=True)["Contents"]}["from-bob"] == me
    s3.delete_bucket_ownership_controls(Bucket=fresh)
    expect_error(s3.get_bucket_ownership_controls, "OwnershipControlsNotFoundError", 404,
                 Bucket=fresh)


def test_ownership_object_writer_preferred_and_enforced_over_stored_acls(server, s3, bob,
                                                                        fresh, tmp_path):
    b3, bob_id, bob_name = bob
    anon = anonymous(server)
    me = s3.list_buckets()["Owner"]["ID"]
    s3.create_bucket(Bucket=fresh, ObjectOwnership="ObjectWriter")
    allow_public(s3, fresh, ownership=None)
    s3.put_bucket_acl(Bucket=fresh, GrantWrite=f'id="{bob_id}"', GrantFullControl=f'id="{me}"')
    # ObjectWriter: what bob writes is bob's
    b3.put_object(Bucket=fresh, Key="w", Body=b"w")
    expect_error(s3.get_object, "AccessDenied", 403, Bucket=fresh, Key="w")
    # BucketOwnerPreferred: bucket-owner-full-control hands it to the bucket owner
    s3.put_bucket_ownership_controls(Bucket=fresh, OwnershipControls={
        "Rules": [{"ObjectOwnership": "BucketOwnerPreferred"}]})
    b3.put_object(Bucket=fresh, Key="pref", Body=b"p", ACL="bucket-owner-full-control")
    assert s3.get_object_acl(Bucket=fresh, Key="pref")["Owner"]["ID"] == me
    up = b3.create_multipart_upload(Bucket=fresh, Key="mp",
                                    ACL="bucket-owner-full-control")["UploadId"]
    etag = b3.upload_part(Bucket=fresh, Key="mp", UploadId=up, PartNumber=1, Body=b"x")["ETag"]
    b3.complete_multipart_upload(Bucket=fresh, Key="mp", UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert s3.get_object_acl(Bucket=fresh, Key="mp")["Owner"]["ID"] == me
    b3.put_object(Bucket=fresh, Key="plain", Body=b"q")
    assert b3.get_object_acl(Bucket=fresh, Key="plain")["Owner"]["ID"] == bob_id
    # malformed controls
    for rules in [[], [{"ObjectOwnership": "Mine"}],
                  [{"ObjectOwnership": "ObjectWriter"}, {"ObjectOwnership": "ObjectWriter"}]]:
        expect_error(s3.put_bucket_ownership_controls, "MalformedXML", 400, Bucket=fresh,
                     OwnershipControls={"Rules": rules})
    # BucketOwnerEnforced is refused while the bucket ACL grants bob
    expect_error(s3.put_bucket_ownership_controls, "InvalidBucketAclWithObjectOwnership", 400,
                 Bucket=fresh, OwnershipControls={
                     "Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]})
    s3.put_object(Bucket=fresh, Key="pub", Body=b"P", ACL="public-read")
    assert anon.get_object(Bucket=fresh, Key="pub")["Body"].read() == b"P"
    s3.put_bucket_acl(Bucket=fresh, ACL="private")
    cli = Clients(server, tmp_path / "home")
    r = cli.aws("s3api", "put-bucket-ownership-controls", "--bucket", fresh,
                "--ownership-controls", "Rules=[{ObjectOwnership=BucketOwnerEnforced}]")
    assert r.returncode == 0, r.stderr
    r = cli.aws("s3api", "get-bucket-ownership-controls", "--bucket", fresh)
    assert json.loads(r.stdout)["OwnershipControls"]["Rules"] == [
        {"ObjectOwnership": "BucketOwnerEnforced"}]
    # ACLs no longer count: the public object is closed, bob's object is the bucket owner's
    expect_error(anon.get_object, "AccessDenied", 403, Bucket=fresh, Key="pub")
    assert s3.get_object(Bucket=fresh, Key="w")["Body"].read() == b"w"
    acl = s3.get_object_acl(Bucket=fresh, Key="w")
    assert acl["Owner"]["ID"] == me and grants_of(acl) == {(me, "FULL_CONTROL")}
    expect_error(b3.get_object, "AccessDenied", 403, Bucket=fresh, Key="w")
