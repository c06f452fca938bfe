"""Access control, issue 14 part A: stored ACLs. GetBucketAcl / GetObjectAcl answer the ACL S3
shows, with the owner's stable canonical id and display name (the same id ListBuckets and listings
show); PutBucketAcl / PutObjectAcl (by version) and the canned ACLs and x-amz-grant-* headers of
CreateBucket, PutObject, CopyObject and CreateMultipartUpload store one, with S3's errors for bad
ACLs (nothing stored); through boto3 and the AWS CLI; another user is refused."""

from __future__ import annotations

import json
import uuid

import pytest

from conftest import IS_MOTO, Clients, make_s3
from s3util import expect_error

pytestmark = pytest.mark.skipif(IS_MOTO, reason="canonical ids and user names are strata's")


def owner_full_control(acl, owner_id, owner_name):
    assert acl["Owner"] == {"ID": owner_id, "DisplayName": owner_name}, acl
    assert acl["Grants"] == [{
        "Grantee": {"ID": owner_id, "DisplayName": owner_name, "Type": "CanonicalUser"},
        "Permission": "FULL_CONTROL",
    }], acl


def test_bucket_and_object_acl_show_the_canonical_owner(server, s3, bucket, tmp_path):
    owner = s3.list_buckets()["Owner"]
    assert len(owner["ID"]) == 64 and owner["DisplayName"]
    owner_full_control(s3.get_bucket_acl(Bucket=bucket), owner["ID"], owner["DisplayName"])
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"one")["VersionId"]
    s3.put_object(Bucket=bucket, Key="k", Body=b"two")
    owner_full_control(s3.get_object_acl(Bucket=bucket, Key="k"), owner["ID"], owner["DisplayName"])
    owner_full_control(s3.get_object_acl(Bucket=bucket, Key="k", VersionId=v1),
                       owner["ID"], owner["DisplayName"])
    # the same owner in the listings
    listed = s3.list_objects_v2(Bucket=bucket, FetchOwner=True)["Contents"][0]["Owner"]
    assert listed == {"ID": owner["ID"], "DisplayName": owner["DisplayName"]}
    assert {v["Owner"]["ID"] for v in s3.list_object_versions(Bucket=bucket)["Versions"]} \
        == {owner["ID"]}
    expect_error(s3.get_object_acl, "NoSuchKey", 404, Bucket=bucket, Key="missing")
    # the AWS CLI reads the same document
    cli = Clients(server, tmp_path / "home")
    r = cli.aws("s3api", "get-bucket-acl", "--bucket", bucket)
    assert r.returncode == 0, r.stderr
    owner_full_control(json.loads(r.stdout), owner["ID"], owner["DisplayName"])
    # another user may not read them
    bob = server.admin_json("user", "add", "bob" + uuid.uuid4().hex[:8])
    b3 = make_s3(server.endpoint, bob["access_key"], bob["secret_key"])
    expect_error(b3.get_bucket_acl, "AccessDenied", 403, Bucket=bucket)
    expect_error(b3.get_object_acl, "AccessDenied", 403, Bucket=bucket, Key="k")


ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTH_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"


def grants_of(acl) -> set[tuple[str, str]]:
    """The grants as (grantee id or group uri, permission)."""
    out = set()
    for g in acl["Grants"]:
        ge = g["Grantee"]
        out.add((ge.get("ID") or ge["URI"], g["Permission"]))
    return out


@pytest.fixture(scope="module")
def bob(server):
    u = server.admin_json("user", "add", "bob" + uuid.uuid4().hex[:8])
    c = make_s3(server.endpoint, u["access_key"], u["secret_key"])
    owner = c.list_buckets()["Owner"]
    return c, owner["ID"], owner["DisplayName"]


def test_bucket_acl_canned_grants_and_body(s3, bob):
    me = s3.list_buckets()["Owner"]["ID"]
    b3, bob_id, bob_name = bob
    name = "acl-" + uuid.uuid4().hex[:12]
    s3.create_bucket(Bucket=name, ACL="public-read")
    try:
        assert grants_of(s3.get_bucket_acl(Bucket=name)) == {
            (me, "FULL_CONTROL"), (ALL_USERS, "READ")}
        s3.put_bucket_acl(Bucket=name, ACL="private")
        assert grants_of(s3.get_bucket_acl(Bucket=name)) == {(me, "FULL_CONTROL")}
        # grant headers: exactly the grants listed (the owner is not added)
        s3.put_bucket_acl(Bucket=name, GrantRead=f'uri="{AUTH_USERS}", id="{bob_id}"',
                          GrantFullControl=f'id="{me}"')
        assert grants_of(s3.get_bucket_acl(Bucket=name)) == {
            (me, "FULL_CONTROL"), (AUTH_USERS, "READ"), (bob_id, "READ")}
        # a body, the grantee shown with its own display name
        s3.put_bucket_acl(Bucket=name, AccessControlPolicy={
            "Owner": {"ID": me},
            "Grants": [
                {"Grantee": {"Type": "CanonicalUser", "ID": me}, "Permission": "FULL_CONTROL"},
                {"Grantee": {"Type": "CanonicalUser", "ID": bob_id}, "Permission": "WRITE"},
            ]})
        acl = s3.get_bucket_acl(Bucket=name)
        assert {"Grantee": {"ID": bob_id, "DisplayName": bob_name, "Type": "CanonicalUser"},
                "Permission": "WRITE"} in acl["Grants"], acl
        # refused ACLs change nothing
        before = acl["Grants"]
        expect_error(s3.put_bucket_acl, "InvalidArgument", 400, Bucket=name, ACL="public")
        expect_error(s3.put_bucket_acl, "InvalidRequest", 400, Bucket=name, ACL="private",
                     GrantRead=f'id="{me}"')
        expect_error(s3.put_bucket_acl, "InvalidArgument", 400, Bucket=name,
                     GrantRead='id="' + "0" * 64 + '"')
        expect_error(s3.put_bucket_acl, "InvalidArgument", 400, Bucket=name,
                     GrantRead='uri="http://acs.amazonaws.com/groups/global/Nobody"')
        expect_error(s3.put_bucket_acl, "UnresolvableGrantByEmailAddress", 400, Bucket=name,
                     GrantRead='emailAddress="nobody@example.com"')
        expect_error(s3.put_bucket_acl, "AccessDenied", 403, Bucket=name,
                     AccessControlPolicy={"Owner": {"ID": bob_id}, "Grants": []})
        expect_error(s3.put_bucket_acl, "MalformedACLError", 400, Bucket=name,
                     AccessControlPolicy={"Owner": {"ID": me}, "Grants": [
                         {"Grantee": {"Type": "CanonicalUser", "ID": me},
                          "Permission": "FULL_CONTROL"}] * 101})
        assert s3.get_bucket_acl(Bucket=name)["Grants"] == before
        # only the owner may change it (for now: ACLs are not yet evaluated for others)
        expect_error(b3.put_bucket_acl, "AccessDenied", 403, Bucket=name, ACL="public-read")
        expect_error(s3.create_bucket, "InvalidArgument", 400,
                     Bucket="acl-" + uuid.uuid4().hex[:12], ACL="nope")
    finally:
        s3.delete_bucket(Bucket=name)


def test_object_acls_on_writes_and_by_version(server, s3, bucket, bob, tmp_path):
    me = s3.list_buckets()["Owner"]["ID"]
    _, bob_id, _ = bob
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"one", ACL="public-read")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="k", Body=b"two")["VersionId"]
    assert grants_of(s3.get_object_acl(Bucket=bucket, Key="k", VersionId=v1)) == {
        (me, "FULL_CONTROL"), (ALL_USERS, "READ")}
    assert grants_of(s3.get_object_acl(Bucket=bucket, Key="k")) == {(me, "FULL_CONTROL")}
    # PutObjectAcl on one version leaves the other alone
    s3.put_object_acl(Bucket=bucket, Key="k", VersionId=v1, ACL="authenticated-read")
    assert grants_of(s3.get_object_acl(Bucket=bucket, Key="k", VersionId=v1)) == {
        (me, "FULL_CONTROL"), (AUTH_USERS, "READ")}
    assert grants_of(s3.get_object_acl(Bucket=bucket, Key="k", VersionId=v2)) == {
        (me, "FULL_CONTROL")}
    expect_error(s3.put_object_acl, "NoSuchKey", 404, Bucket=bucket, Key="nope", ACL="private")
    # grant headers on PutObject, CopyObject, CreateMultipartUpload
    s3.put_object(Bucket=bucket, Key="g", Body=b"x", GrantRead=f'id="{bob_id}"',
                  GrantFullControl=f'id="{me}"')
    assert grants_of(s3.get_object_acl(Bucket=bucket, Key="g")) == {
        (me, "FULL_CONTROL"), (bob_id, "READ")}
    s3.copy_object(Bucket=bucket, Key="c", CopySource={"Bucket": bucket, "Key": "g"},
                   ACL="public-read")
    assert grants_of(s3.get_object_acl(Bucket=bucket, Key="c")) == {
        (me, "FULL_CONTROL"), (ALL_USERS, "READ")}
    s3.copy_object(Bucket=bucket, Key="c2", CopySource={"Bucket": bucket, "Key": "g"})
    assert grants_of(s3.get_object_acl(Bucket=bucket, Key="c2")) == {(me, "FULL_CONTROL")}, \
        "a copy does not take the source's ACL"
    up = s3.create_multipart_upload(Bucket=bucket, Key="m", GrantReadACP=f'id="{bob_id}"',
                                    GrantFullControl=f'id="{me}"')["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="m", UploadId=up, PartNumber=1, Body=b"p")["ETag"]
    s3.complete_multipart_upload(Bucket=bucket, Key="m", UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert grants_of(s3.get_object_acl(Bucket=bucket, Key="m")) == {
        (me, "FULL_CONTROL"), (bob_id, "READ_ACP")}
    # a refused ACL stores nothing, not even the object
    expect_error(s3.put_object, "InvalidArgument", 400, Bucket=bucket, Key="bad", Body=b"x",
                 ACL="world-writable")
    expect_error(s3.put_object, "InvalidArgument", 400, Bucket=bucket, Key="bad", Body=b"x",
                 GrantRead='id="' + "f" * 64 + '"')
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="bad")
    # the AWS CLI sets and reads the same ACLs
    cli = Clients(server, tmp_path / "home")
    r = cli.aws("s3api", "put-object-acl", "--bucket", bucket, "--key", "g", "--acl",
                "bucket-owner-full-control")
    assert r.returncode == 0, r.stderr
    r = cli.aws("s3api", "get-object-acl", "--bucket", bucket, "--key", "g")
    assert grants_of(json.loads(r.stdout)) == {(me, "FULL_CONTROL")}
