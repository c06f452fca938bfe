"""Versioning with boto3 and the AWS CLI (issue 5)."""

from __future__ import annotations

import json

import pytest

from conftest import IS_MOTO, det_bytes, empty_bucket, make_s3, unique_bucket
from s3util import expect_error, md5_etag


@pytest.fixture
def vbucket(s3):
    name = unique_bucket("ver")
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    yield name
    empty_bucket(s3, name)


# Per-assertion guards: where moto deviates from AWS on one detail, the rest of the test still runs
# against moto; the detail is checked against strata only (STRICT).
STRICT = not IS_MOTO


def versions_of(s3, bucket, key=None):
    """(versions, delete_markers) as S3 lists them: each [(key, version_id, is_latest)],
    ordered by key, newest first."""
    r = s3.list_object_versions(Bucket=bucket, **({"Prefix": key} if key else {}))
    return ([(v["Key"], v["VersionId"], v["IsLatest"]) for v in r.get("Versions", [])],
            [(d["Key"], d["VersionId"], d["IsLatest"]) for d in r.get("DeleteMarkers", [])])


def test_versioning_status(s3, bucket):
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    r = s3.put_object(Bucket=bucket, Key="u", Body=b"x")
    assert "VersionId" not in r  # unversioned buckets do not return a version id
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Suspended"
    if STRICT:  # moto accepts any Status value
        # there is no way back to "unversioned"
        expect_error(s3.put_bucket_versioning, "MalformedXML", 400, Bucket=bucket,
                     VersioningConfiguration={"Status": "Disabled"})
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Suspended"
    # the object written before versioning is the "null" version
    v = s3.list_object_versions(Bucket=bucket)["Versions"]
    assert [(x["Key"], x["VersionId"]) for x in v] == [("u", "null")]


def test_versions_get_head_delete(s3, vbucket):
    b = vbucket
    v1 = s3.put_object(Bucket=b, Key="k", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=b, Key="k", Body=b"two")["VersionId"]
    assert v1 and v2 and v1 != v2 and "null" not in (v1, v2)
    assert s3.get_object(Bucket=b, Key="k")["Body"].read() == b"two"
    g1 = s3.get_object(Bucket=b, Key="k", VersionId=v1)
    assert g1["Body"].read() == b"one" and g1["VersionId"] == v1 and g1["ETag"] == md5_etag(b"one")
    assert s3.head_object(Bucket=b, Key="k", VersionId=v1)["ContentLength"] == 3
    assert s3.head_object(Bucket=b, Key="k")["VersionId"] == v2
    expect_error(s3.get_object, "NoSuchVersion", 404, Bucket=b, Key="k", VersionId="3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY")
    # DELETE without a version id adds a delete marker
    d = s3.delete_object(Bucket=b, Key="k")
    assert d["DeleteMarker"] is True and d["VersionId"] not in (v1, v2)
    dm = d["VersionId"]
    err = expect_error(s3.get_object, "NoSuchKey", 404, Bucket=b, Key="k")
    hdrs = err["ResponseMetadata"]["HTTPHeaders"]
    if STRICT:  # moto omits these headers on the 404
        assert hdrs.get("x-amz-delete-marker") == "true"
        assert hdrs.get("x-amz-version-id") == dm
    expect_error(s3.head_object, "404", 404, Bucket=b, Key="k")
    # GET / HEAD of the delete marker itself: 405
    if STRICT:  # moto answers 404 NoSuchVersion here
        err = expect_error(s3.get_object, "MethodNotAllowed", 405, Bucket=b, Key="k", VersionId=dm)
        assert err["ResponseMetadata"]["HTTPHeaders"].get("x-amz-delete-marker") == "true"
        expect_error(s3.head_object, "405", 405, Bucket=b, Key="k", VersionId=dm)
    # older versions stay readable
    assert s3.get_object(Bucket=b, Key="k", VersionId=v2)["Body"].read() == b"two"
    assert "Contents" not in s3.list_objects_v2(Bucket=b)
    assert versions_of(s3, b) == ([("k", v2, False), ("k", v1, False)], [("k", dm, True)])
    # deleting the delete marker brings v2 back
    d = s3.delete_object(Bucket=b, Key="k", VersionId=dm)
    if STRICT:  # moto omits x-amz-delete-marker when a marker is removed
        assert d["DeleteMarker"] is True and d["VersionId"] == dm
    assert s3.get_object(Bucket=b, Key="k")["Body"].read() == b"two"
    # deleting v2 by id really deletes it; v1 becomes current
    d = s3.delete_object(Bucket=b, Key="k", VersionId=v2)
    assert d["VersionId"] == v2 and not d.get("DeleteMarker")
    assert s3.get_object(Bucket=b, Key="k")["Body"].read() == b"one"
    assert versions_of(s3, b) == ([("k", v1, True)], [])
    expect_error(s3.get_object, "NoSuchVersion", 404, Bucket=b, Key="k", VersionId=v2)


def test_version_ids_on_copy_multipart_and_tagging(s3, vbucket):
    b = vbucket
    v1 = s3.put_object(Bucket=b, Key="src", Body=b"first", Tagging="gen=1")["VersionId"]
    v2 = s3.put_object(Bucket=b, Key="src", Body=b"second", Tagging="gen=2")["VersionId"]
    c = s3.copy_object(Bucket=b, Key="dst", CopySource={"Bucket": b, "Key": "src", "VersionId": v1})
    assert c["VersionId"] and c["CopySourceVersionId"] == v1
    assert s3.get_object(Bucket=b, Key="dst")["Body"].read() == b"first"
    assert s3.get_object(Bucket=b, Key="dst", VersionId=c["VersionId"])["Body"].read() == b"first"
    # tagging per version
    assert s3.get_object_tagging(Bucket=b, Key="src", VersionId=v1)["TagSet"] == [{"Key": "gen", "Value": "1"}]
    assert s3.get_object_tagging(Bucket=b, Key="src")["TagSet"] == [{"Key": "gen", "Value": "2"}]
    r = s3.put_object_tagging(Bucket=b, Key="src", VersionId=v1, Tagging={"TagSet": [{"Key": "x", "Value": "y"}]})
    if STRICT:  # moto omits x-amz-version-id on PutObjectTagging
        assert r["VersionId"] == v1
    assert s3.get_object_tagging(Bucket=b, Key="src", VersionId=v1)["TagSet"] == [{"Key": "x", "Value": "y"}]
    assert s3.get_object_tagging(Bucket=b, Key="src", VersionId=v2)["TagSet"] == [{"Key": "gen", "Value": "2"}]
    # complete multipart returns the new version id
    up = s3.create_multipart_upload(Bucket=b, Key="mp")
    p = s3.upload_part(Bucket=b, Key="mp", UploadId=up["UploadId"], PartNumber=1, Body=b"part")
    done = s3.complete_multipart_upload(Bucket=b, Key="mp", UploadId=up["UploadId"],
                                        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p["ETag"]}]})
    assert done["VersionId"]
    assert s3.head_object(Bucket=b, Key="mp")["VersionId"] == done["VersionId"]


@pytest.mark.strata_only(reason="moto drops the older real versions when versioning is suspended")
def test_suspended_null_version_rules(s3, vbucket):
    b = vbucket
    real = s3.put_object(Bucket=b, Key="k", Body=b"real")["VersionId"]
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Suspended"})
    r = s3.put_object(Bucket=b, Key="k", Body=b"null-1")
    assert r.get("VersionId", "null") == "null"
    s3.put_object(Bucket=b, Key="k", Body=b"null-2")  # replaces the null version
    assert versions_of(s3, b) == ([("k", "null", True), ("k", real, False)], [])
    assert s3.get_object(Bucket=b, Key="k")["Body"].read() == b"null-2"
    assert s3.get_object(Bucket=b, Key="k", VersionId="null")["Body"].read() == b"null-2"
    assert s3.get_object(Bucket=b, Key="k", VersionId=real)["Body"].read() == b"real"
    # DELETE while suspended: a delete marker with version id null replaces the null version
    d = s3.delete_object(Bucket=b, Key="k")
    assert d["DeleteMarker"] is True and d.get("VersionId", "null") == "null"
    assert versions_of(s3, b) == ([("k", real, False)], [("k", "null", True)])
    assert s3.get_object(Bucket=b, Key="k", VersionId=real)["Body"].read() == b"real"
    # re-enabling: new versions get real ids again, the null marker stays in history
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    v3 = s3.put_object(Bucket=b, Key="k", Body=b"three")["VersionId"]
    assert v3 not in ("null", real)
    assert versions_of(s3, b) == ([("k", v3, True), ("k", real, False)], [("k", "null", False)])


def test_list_object_versions_markers(s3, vbucket):
    b = vbucket
    expected = []
    for key in ("a", "b", "c"):
        ids = [s3.put_object(Bucket=b, Key=key, Body=f"{key}{i}".encode())["VersionId"] for i in range(3)]
        expected += [(key, v) for v in reversed(ids)]
    dm = s3.delete_object(Bucket=b, Key="b")["VersionId"]
    expected.insert(3, ("b", dm))
    seen, km, vm = [], None, None
    for _ in range(30):
        kw = {"KeyMarker": km, "VersionIdMarker": vm} if km else {}
        r = s3.list_object_versions(Bucket=b, MaxKeys=2, **kw)
        page = sorted([(v["Key"], v["VersionId"], v["LastModified"]) for v in r.get("Versions", [])]
                      + [(d["Key"], d["VersionId"], d["LastModified"]) for d in r.get("DeleteMarkers", [])],
                      key=lambda x: (x[0], -x[2].timestamp()))
        assert len(page) <= 2
        seen += [(k, v) for k, v, _ in page]
        if not r["IsTruncated"]:
            break
        km, vm = r["NextKeyMarker"], r["NextVersionIdMarker"]
    assert sorted(seen) == sorted(expected) and len(seen) == len(expected) == 10
    # prefix + delimiter on versions
    r = s3.list_object_versions(Bucket=b, Prefix="a")
    assert [v["Key"] for v in r["Versions"]] == ["a"] * 3 and "DeleteMarkers" not in r


def test_multi_delete_versions(s3, vbucket):
    b = vbucket
    v1 = s3.put_object(Bucket=b, Key="m", Body=b"1")["VersionId"]
    v2 = s3.put_object(Bucket=b, Key="m", Body=b"2")["VersionId"]
    r = s3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": "m", "VersionId": v1}, {"Key": "n"}]})
    by_key = {(d["Key"], d.get("VersionId")): d for d in r["Deleted"]}
    assert ("m", v1) in by_key
    n = [d for d in r["Deleted"] if d["Key"] == "n"][0]
    if STRICT:  # moto omits DeleteMarker/DeleteMarkerVersionId in the multi-delete result
        assert n["DeleteMarker"] is True and n["DeleteMarkerVersionId"]
        assert versions_of(s3, b, "n")[1] == [("n", n["DeleteMarkerVersionId"], True)]
    assert versions_of(s3, b, "m") == ([("m", v2, True)], [])


def test_versioning_with_awscli(clients, s3):
    b = unique_bucket("vcli")
    clients.aws("s3api", "create-bucket", "--bucket", b)
    try:
        clients.aws("s3api", "put-bucket-versioning", "--bucket", b,
                    "--versioning-configuration", "Status=Enabled")
        st = json.loads(clients.aws("s3api", "get-bucket-versioning", "--bucket", b).stdout)
        assert st["Status"] == "Enabled"
        body = clients.home / "body"
        ids = []
        for i in range(2):
            body.write_bytes(f"cli{i}".encode())
            ids.append(json.loads(clients.aws("s3api", "put-object", "--bucket", b, "--key", "k",
                                              "--body", str(body)).stdout)["VersionId"])
        d = json.loads(clients.aws("s3api", "delete-object", "--bucket", b, "--key", "k").stdout)
        assert d["DeleteMarker"] is True
        lv = json.loads(clients.aws("s3api", "list-object-versions", "--bucket", b).stdout)
        assert sorted(v["VersionId"] for v in lv["Versions"]) == sorted(ids)
        assert [m["VersionId"] for m in lv["DeleteMarkers"]] == [d["VersionId"]]
        out = clients.home / "out"
        clients.aws("s3api", "get-object", "--bucket", b, "--key", "k", "--version-id", ids[0], str(out))
        assert out.read_bytes() == b"cli0"
        r = clients.aws("s3api", "get-object", "--bucket", b, "--key", "k", str(out), check=False)
        assert r.returncode != 0 and b"NoSuchKey" in r.stderr
    finally:
        empty_bucket(s3, b)


@pytest.mark.strata_only(reason="restart on the same data dir; moto is in-memory")
def test_versions_survive_restart(fresh_server):
    srv = fresh_server
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    s3.create_bucket(Bucket="vers-restart")
    s3.put_bucket_versioning(Bucket="vers-restart", VersioningConfiguration={"Status": "Enabled"})
    data = {i: det_bytes(f"vr{i}", 10_000 * i) for i in range(3)}
    ids = [s3.put_object(Bucket="vers-restart", Key="k", Body=data[i])["VersionId"] for i in range(3)]
    dm = s3.delete_object(Bucket="vers-restart", Key="k")["VersionId"]
    before = versions_of(s3, "vers-restart")
    srv.restart()
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    assert versions_of(s3, "vers-restart") == before
    assert s3.get_bucket_versioning(Bucket="vers-restart")["Status"] == "Enabled"
    expect_error(s3.get_object, "NoSuchKey", 404, Bucket="vers-restart", Key="k")
    for i, v in enumerate(ids):
        assert s3.get_object(Bucket="vers-restart", Key="k", VersionId=v)["Body"].read() == data[i]
    # work continues after the restart: removing the marker restores the newest version
    s3.delete_object(Bucket="vers-restart", Key="k", VersionId=dm)
    assert s3.get_object(Bucket="vers-restart", Key="k")["Body"].read() == data[2]
    v4 = s3.put_object(Bucket="vers-restart", Key="k", Body=b"after restart")["VersionId"]
    assert v4 not in ids
