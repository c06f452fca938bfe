"""Access control, issue 14 part A: stored ACLs. GetBucketAcl / GetObjectAcl answer the ACL S3
shows, with the owner's stable canonical id and display name (the same id ListBuckets and listings
show); PutBucketAcl / PutObjectAcl (by version) and the canned ACLs and x-amz-grant-* headers of
CreateBucket, PutObject, CopyObject and CreateMultipartUpload store one, with S3's errors for bad
ACLs (nothing stored); through boto3 and the AWS CLI.

Grants take effect as S3 defines them (every operation asks the one authorisation function): a
second user and anonymous (unsigned boto3) clients are allowed exactly what the bucket and object
ACLs grant them, with S3's 403 AccessDenied otherwise; an unsigned request with a body is refused
before the server reads it unless a grant allows the write."""

from __future__ import annotations

import json
import socket
import time
import uuid

import pytest

from conftest import IS_MOTO, REGION, Clients, allow_public, create_public_bucket, make_s3
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


# ACLs apply only to buckets that allow them: new buckets are BucketOwnerEnforced and block
# public access, as in S3 (conftest.allow_public lifts both).
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTH_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"


def grants_of(acl) -> set[tuple[str, str]]:
    """The grants as (grantee id or group uri, permission)."""
    out = set()
    for g in acl["Grants"]:
        ge = g["Grantee"]
        out.add((ge.get("ID") or ge["URI"], g["Permission"]))
    return out


def test_bucket_acl_canned_grants_and_body(s3, bob):
    me = s3.list_buckets()["Owner"]["ID"]
    b3, bob_id, bob_name = bob
    name = "acl-" + uuid.uuid4().hex[:12]
    # new buckets block public ACLs, so CreateBucket with one is refused and nothing is created
    expect_error(s3.create_bucket, "InvalidBucketAclWithBlockPublicAccessError", 400,
                 Bucket=name, ObjectOwnership="ObjectWriter", ACL="public-read")
    expect_error(s3.head_bucket, "404", 404, Bucket=name)
    create_public_bucket(s3, name, "public-read")
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
        # bob has no WRITE_ACP grant: he may not change it
        expect_error(b3.put_bucket_acl, "AccessDenied", 403, Bucket=name, ACL="public-read")
        expect_error(s3.create_bucket, "InvalidArgument", 400,
                     Bucket="acl-" + uuid.uuid4().hex[:12], ACL="nope")
    finally:
        s3.delete_bucket(Bucket=name)


def test_object_acls_on_writes_and_by_version(server, s3, bucket, bob, tmp_path):
    allow_public(s3, bucket)
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


# ---- grants in effect: a second user and anonymous callers -------------------------------------
def anonymous(server):
    """An unsigned boto3 client (no Authorization header, no presigned query)."""
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    return boto3.session.Session().client("s3", endpoint_url=server.endpoint, config=Config(
        region_name=REGION, signature_version=UNSIGNED, s3={"addressing_style": "path"},
        retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=10, read_timeout=30))


@pytest.fixture
def fresh(s3):
    """A bucket name the test creates itself (with the ACL it needs); emptied afterwards."""
    name = "acl-" + uuid.uuid4().hex[:12]
    yield name
    from conftest import empty_bucket
    empty_bucket(s3, name)


def keys(listing) -> list[str]:
    return [o["Key"] for o in listing.get("Contents", [])]


def test_public_read_bucket_lets_anonymous_list_and_get_but_not_put(server, s3, fresh):
    anon = anonymous(server)
    create_public_bucket(s3, fresh, "public-read")
    s3.put_object(Bucket=fresh, Key="pub", Body=b"public bytes", ACL="public-read")
    s3.put_object(Bucket=fresh, Key="priv", Body=b"private bytes")
    # bucket READ: the listings and HeadBucket
    assert keys(anon.list_objects_v2(Bucket=fresh)) == ["priv", "pub"]
    assert keys(anon.list_objects(Bucket=fresh)) == ["priv", "pub"]
    assert [v["Key"] for v in anon.list_object_versions(Bucket=fresh)["Versions"]] == [
        "priv", "pub"]
    anon.head_bucket(Bucket=fresh)
    # object READ comes from the object's ACL
    assert anon.get_object(Bucket=fresh, Key="pub")["Body"].read() == b"public bytes"
    assert anon.head_object(Bucket=fresh, Key="pub")["ContentLength"] == 12
    expect_error(anon.get_object, "AccessDenied", 403, Bucket=fresh, Key="priv")
    # may list, so a missing key is a 404
    expect_error(anon.get_object, "NoSuchKey", 404, Bucket=fresh, Key="missing")
    # no WRITE: nothing written, nothing deleted
    expect_error(anon.put_object, "AccessDenied", 403, Bucket=fresh, Key="new", Body=b"x")
    expect_error(s3.head_object, "404", 404, Bucket=fresh, Key="new")
    expect_error(anon.delete_object, "AccessDenied", 403, Bucket=fresh, Key="pub")
    # DeleteObjects carries a body: refused whole, before it is read
    expect_error(anon.delete_objects, "AccessDenied", 403, Bucket=fresh,
                 Delete={"Objects": [{"Key": "pub"}]})
    assert s3.head_object(Bucket=fresh, Key="pub")["ContentLength"] == 12
    # no READ_ACP / WRITE_ACP, no owner operations, nothing outside a bucket
    expect_error(anon.get_bucket_acl, "AccessDenied", 403, Bucket=fresh)
    expect_error(anon.get_object_acl, "AccessDenied", 403, Bucket=fresh, Key="pub")
    expect_error(anon.put_bucket_acl, "AccessDenied", 403, Bucket=fresh, ACL="public-read-write")
    expect_error(anon.put_bucket_acl, "AccessDenied", 403, Bucket=fresh,
                 AccessControlPolicy={"Owner": {"ID": "x"}, "Grants": []})
    expect_error(anon.get_bucket_versioning, "AccessDenied", 403, Bucket=fresh)
    expect_error(anon.put_bucket_versioning, "AccessDenied", 403, Bucket=fresh,
                 VersioningConfiguration={"Status": "Enabled"})
    expect_error(anon.delete_bucket, "AccessDenied", 403, Bucket=fresh)
    expect_error(anon.list_buckets, "AccessDenied", 403)
    expect_error(anon.create_bucket, "AccessDenied", 403, Bucket="anon-" + uuid.uuid4().hex[:8])
    expect_error(anon.list_objects_v2, "NoSuchBucket", 404, Bucket="nope-" + uuid.uuid4().hex[:8])
    assert grants_of(s3.get_bucket_acl(Bucket=fresh)) == {
        (s3.list_buckets()["Owner"]["ID"], "FULL_CONTROL"), (ALL_USERS, "READ")}


def test_public_object_in_private_bucket_is_readable_its_neighbours_not(server, s3, bucket):
    allow_public(s3, bucket)
    anon = anonymous(server)
    s3.put_object(Bucket=bucket, Key="shared", Body=b"for everyone", ACL="public-read")
    s3.put_object(Bucket=bucket, Key="neighbour", Body=b"mine")
    assert anon.get_object(Bucket=bucket, Key="shared")["Body"].read() == b"for everyone"
    expect_error(anon.get_object, "AccessDenied", 403, Bucket=bucket, Key="neighbour")
    expect_error(anon.head_object, "403", 403, Bucket=bucket, Key="neighbour")
    # no listing grant: a missing key is 403 too (no listing through error codes)
    expect_error(anon.get_object, "AccessDenied", 403, Bucket=bucket, Key="missing")
    expect_error(anon.list_objects_v2, "AccessDenied", 403, Bucket=bucket)
    # the owner still gets 404 for a missing key
    expect_error(s3.get_object, "NoSuchKey", 404, Bucket=bucket, Key="missing")
    # a public read is audited as user "anonymous"
    got = anon.get_object(Bucket=bucket, Key="shared")
    rid = got["ResponseMetadata"]["RequestId"]
    found = [f["record"] for f in server.admin_json(
        "--json", "audit", "search", "--user", "anonymous", "--bucket", bucket, "--since", "1h")]
    rec = next((r for r in found if r["request_id"] == rid), None)
    assert rec and rec["operation"] == "REST.GET.OBJECT" and rec["status"] == 200, found
    # no user can take that name, so the audit's "anonymous" is always an unsigned caller
    r = server.admin("user", "add", "anonymous")
    assert r.returncode != 0 and "reserved" in r.stderr, (r.returncode, r.stdout, r.stderr)
    # revoking the grant closes it
    s3.put_object_acl(Bucket=bucket, Key="shared", ACL="private")
    expect_error(anon.get_object, "AccessDenied", 403, Bucket=bucket, Key="shared")


def test_read_grant_lets_a_second_user_list_but_not_delete_write_grant_lets_put(s3, bob, fresh):
    b3, bob_id, _ = bob
    me = s3.list_buckets()["Owner"]["ID"]
    s3.create_bucket(Bucket=fresh, ObjectOwnership="ObjectWriter", GrantRead=f'id="{bob_id}"',
                     GrantFullControl=f'id="{me}"')
    s3.put_object(Bucket=fresh, Key="k", Body=b"owner's")
    assert keys(b3.list_objects_v2(Bucket=fresh)) == ["k"]
    expect_error(b3.delete_object, "AccessDenied", 403, Bucket=fresh, Key="k")
    expect_error(b3.put_object, "AccessDenied", 403, Bucket=fresh, Key="b", Body=b"x")
    # a bucket READ grant does not open the objects (their ACLs are private)
    expect_error(b3.get_object, "AccessDenied", 403, Bucket=fresh, Key="k")
    expect_error(b3.get_bucket_acl, "AccessDenied", 403, Bucket=fresh)
    expect_error(b3.put_bucket_versioning, "AccessDenied", 403, Bucket=fresh,
                 VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_object(Bucket=fresh, Key="k")["Body"].read() == b"owner's"
    # WRITE (and READ_ACP): bob writes, owns what he wrote, deletes; still cannot list
    s3.put_bucket_acl(Bucket=fresh, GrantWrite=f'id="{bob_id}"', GrantReadACP=f'id="{bob_id}"',
                      GrantFullControl=f'id="{me}"')
    assert grants_of(b3.get_bucket_acl(Bucket=fresh)) == {
        (me, "FULL_CONTROL"), (bob_id, "WRITE"), (bob_id, "READ_ACP")}
    b3.put_object(Bucket=fresh, Key="bobs", Body=b"bob's")
    assert b3.get_object(Bucket=fresh, Key="bobs")["Body"].read() == b"bob's"
    assert b3.get_object_acl(Bucket=fresh, Key="bobs")["Owner"]["ID"] == bob_id
    up = b3.create_multipart_upload(Bucket=fresh, Key="mp")["UploadId"]
    etag = b3.upload_part(Bucket=fresh, Key="mp", UploadId=up, PartNumber=1, Body=b"p")["ETag"]
    b3.complete_multipart_upload(Bucket=fresh, Key="mp", UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": etag}]})
    expect_error(b3.list_objects_v2, "AccessDenied", 403, Bucket=fresh)
    b3.delete_object(Bucket=fresh, Key="k")
    expect_error(s3.head_object, "404", 404, Bucket=fresh, Key="k")
    # an object bob wrote privately is his: the bucket owner reads it only if bob grants it
    expect_error(s3.get_object, "AccessDenied", 403, Bucket=fresh, Key="bobs")
    b3.put_object_acl(Bucket=fresh, Key="bobs", ACL="bucket-owner-read")
    assert s3.get_object(Bucket=fresh, Key="bobs")["Body"].read() == b"bob's"


def test_authenticated_read_opens_to_signed_users_only(server, s3, bob, fresh):
    b3, _, _ = bob
    anon = anonymous(server)
    create_public_bucket(s3, fresh, "authenticated-read")
    s3.put_object(Bucket=fresh, Key="k", Body=b"members", ACL="authenticated-read")
    assert keys(b3.list_objects_v2(Bucket=fresh)) == ["k"]
    assert b3.get_object(Bucket=fresh, Key="k")["Body"].read() == b"members"
    expect_error(anon.list_objects_v2, "AccessDenied", 403, Bucket=fresh)
    expect_error(anon.get_object, "AccessDenied", 403, Bucket=fresh, Key="k")


def test_public_read_write_lets_anonymous_write_owned_by_the_bucket_owner(server, s3, fresh):
    anon = anonymous(server)
    me = s3.list_buckets()["Owner"]["ID"]
    create_public_bucket(s3, fresh, "public-read-write")
    anon.put_object(Bucket=fresh, Key="drop", Body=b"anonymous upload")
    assert s3.get_object(Bucket=fresh, Key="drop")["Body"].read() == b"anonymous upload"
    assert s3.get_object_acl(Bucket=fresh, Key="drop")["Owner"]["ID"] == me
    anon.delete_object(Bucket=fresh, Key="drop")
    expect_error(s3.head_object, "404", 404, Bucket=fresh, Key="drop")
    # WRITE is not configuration
    expect_error(anon.put_bucket_versioning, "AccessDenied", 403, Bucket=fresh,
                 VersioningConfiguration={"Status": "Enabled"})


def unsigned_request_head(server, method: str, path: str, announced: int) -> tuple[int, bytes, float]:
    """Sends only the head of an unsigned request announcing `announced` body bytes; returns the
    status and body of the answer and how long it took. A server that waited for the body would
    answer only after its body timeout (RequestTimeout)."""
    host, port = server.endpoint.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=10)
    try:
        started = time.monotonic()
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                  f"Content-Length: {announced}\r\n\r\n".encode())
        data = b""
        s.settimeout(8)
        while b"</Error>" not in data and time.monotonic() - started < 8:
            try:
                got = s.recv(65536)
            except socket.timeout:
                break
            if not got:
                break
            data += got
        elapsed = time.monotonic() - started
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1]) if head.startswith(b"HTTP/") else 0
    return status, body, elapsed


def test_anonymous_writes_to_a_private_bucket_are_refused_before_the_body(server, s3, bucket):
    anon = anonymous(server)
    expect_error(anon.put_object, "AccessDenied", 403, Bucket=bucket, Key="k", Body=b"x" * 4096)
    expect_error(anon.create_multipart_upload, "AccessDenied", 403, Bucket=bucket, Key="m")
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    # the refusal comes before any body byte is read: a 1 GiB PUT announced and never sent, an
    # XML body (PutBucketAcl, PutBucketLifecycleConfiguration) announced and never sent
    for method, path, n in [("PUT", f"/{bucket}/big", 1 << 30),
                            ("PUT", f"/{bucket}?acl", 2000),
                            ("PUT", f"/{bucket}?lifecycle", 2000),
                            ("POST", f"/{bucket}?delete", 2000)]:
        status, body, elapsed = unsigned_request_head(server, method, path, n)
        assert status == 403 and b"<Code>AccessDenied</Code>" in body, (path, status, body)
        assert elapsed < 5, (path, elapsed)
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="big")
    assert grants_of(s3.get_bucket_acl(Bucket=bucket)) == {
        (s3.list_buckets()["Owner"]["ID"], "FULL_CONTROL")}


# ---- bucket policies ------------------------------------------------------------------------------
def test_bucket_policy_put_get_status_delete_and_malformed(server, s3, bob, fresh):
    b3, bob_id, bob_name = bob
    anon = anonymous(server)
    s3.create_bucket(Bucket=fresh)
    allow_public(s3, fresh, ownership=None)
    s3.put_object(Bucket=fresh, Key="pub/a", Body=b"A")
    s3.put_object(Bucket=fresh, Key="priv/b", Body=b"B")
    expect_error(s3.get_bucket_policy, "NoSuchBucketPolicy", 404, Bucket=fresh)
    expect_error(s3.get_bucket_policy_status, "NoSuchBucketPolicy", 404, Bucket=fresh)
    # malformed documents: MalformedPolicy, nothing stored
    ok_stmt = {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
               "Resource": f"arn:aws:s3:::{fresh}/*"}
    for bad in ["not json", json.dumps({"Version": "2012-10-17", "Statement": []}),
                json.dumps({"Statement": [dict(ok_stmt, Effect="Perhaps")]}),
                json.dumps({"Statement": [dict(ok_stmt, Resource="arn:aws:s3:::elsewhere/*")]}),
                json.dumps({"Statement": [{k: v for k, v in ok_stmt.items() if k != "Principal"}]}),
                json.dumps({"Statement": [dict(ok_stmt, Condition={"StringSortOf": {"a": "b"}})]})]:
        expect_error(s3.put_bucket_policy, "MalformedPolicy", 400, Bucket=fresh, Policy=bad)
    expect_error(s3.get_bucket_policy, "NoSuchBucketPolicy", 404, Bucket=fresh)
    policy = {"Version": "2012-10-17", "Statement": [
        {"Sid": "public", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
         "Resource": f"arn:aws:s3:::{fresh}/pub/*"},
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam:::user/{bob_name}"},
         "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{fresh}",
         "Condition": {"StringLike": {"s3:prefix": "pub/*"}}},
        {"Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObject",
         "Resource": f"arn:aws:s3:::{fresh}/*"},
    ]}
    s3.put_bucket_policy(Bucket=fresh, Policy=json.dumps(policy))
    assert json.loads(s3.get_bucket_policy(Bucket=fresh)["Policy"]) == policy
    assert s3.get_bucket_policy_status(Bucket=fresh)["PolicyStatus"]["IsPublic"] is True
    # Allow to everyone, by resource pattern
    assert anon.get_object(Bucket=fresh, Key="pub/a")["Body"].read() == b"A"
    expect_error(anon.get_object, "AccessDenied", 403, Bucket=fresh, Key="priv/b")
    # Allow to a user by name, under a condition on s3:prefix
    assert keys(b3.list_objects_v2(Bucket=fresh, Prefix="pub/")) == ["pub/a"]
    expect_error(b3.list_objects_v2, "AccessDenied", 403, Bucket=fresh)
    expect_error(b3.get_bucket_policy, "AccessDenied", 403, Bucket=fresh)
    # an explicit Deny wins, over the bucket owner too; the owner may still remove the policy
    expect_error(s3.delete_object, "AccessDenied", 403, Bucket=fresh, Key="pub/a")
    assert s3.head_object(Bucket=fresh, Key="pub/a")["ContentLength"] == 1
    # a condition on the source address (the tests run on 127.0.0.1)
    for net, allowed in [("127.0.0.0/8", True), ("10.0.0.0/8", False)]:
        s3.put_bucket_policy(Bucket=fresh, Policy=json.dumps({"Statement": [dict(
            ok_stmt, Condition={"IpAddress": {"aws:SourceIp": net}})]}))
        if allowed:
            assert anon.get_object(Bucket=fresh, Key="priv/b")["Body"].read() == b"B"
        else:
            expect_error(anon.get_object, "AccessDenied", 403, Bucket=fresh, Key="priv/b")
    assert s3.get_bucket_policy_status(Bucket=fresh)["PolicyStatus"]["IsPublic"] is False
    # an anonymous write a policy allows: its body is accepted
    s3.put_bucket_policy(Bucket=fresh, Policy=json.dumps({"Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:PutObject",
         "Resource": f"arn:aws:s3:::{fresh}/drop/*"}]}))
    anon.put_object(Bucket=fresh, Key="drop/x", Body=b"dropped")
    expect_error(anon.put_object, "AccessDenied", 403, Bucket=fresh, Key="elsewhere", Body=b"x")
    assert s3.get_object(Bucket=fresh, Key="drop/x")["Body"].read() == b"dropped"
    s3.delete_bucket_policy(Bucket=fresh)
    expect_error(s3.get_bucket_policy, "NoSuchBucketPolicy", 404, Bucket=fresh)
    expect_error(anon.put_object, "AccessDenied", 403, Bucket=fresh, Key="drop/y", Body=b"x")
