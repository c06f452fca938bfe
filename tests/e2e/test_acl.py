"""Access control, issue 14 part A (first step): GetBucketAcl / GetObjectAcl answer the ACL S3
shows for a private bucket or object, with the owner's stable canonical id and display name (the
same id ListBuckets and listings show), through boto3 and the AWS CLI; another user is refused."""

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
