"""Lifecycle (issue 10): the configuration API with S3's errors, and rules that fire on time and only
on the right versions, in the day-scaled mode (`--lifecycle-day-secs 1`: a lifecycle day lasts one
second). Crash safety: kill -9 in the middle of a pass neither loses nor duplicates an action."""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import json
import time

import pytest
from botocore.exceptions import ClientError

import conftest
from conftest import make_s3, unique_bucket

pytestmark = pytest.mark.strata_only(reason="the scaled lifecycle day is a strata server flag")

DAY_ARGS = ["--lifecycle-day-secs", "1"]


def wait_for(pred, timeout: float, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def code_of(e: ClientError) -> tuple[str, int]:
    return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]


def expect(fn, code: str, status: int):
    with pytest.raises(ClientError) as ei:
        fn()
    assert code_of(ei.value) == (code, status), ei.value.response


@pytest.fixture(scope="module")
def lsrv(tmp_path_factory):
    s = conftest._start(tmp_path_factory.mktemp("lifecycle"), "lifecycle", extra_args=DAY_ARGS)
    yield s
    conftest._finish(s)


@pytest.fixture(scope="module")
def ls3(lsrv):
    return make_s3(lsrv.endpoint, lsrv.access_key, lsrv.secret_key)


def keys_of(s3, bucket) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}


def versions_of(s3, bucket):
    r = s3.list_object_versions(Bucket=bucket)
    return r.get("Versions", []), r.get("DeleteMarkers", [])


# ---- configuration API -----------------------------------------------------------------------------
def test_configuration_api_and_s3_errors(ls3):
    s3 = ls3
    b = unique_bucket("lc")
    s3.create_bucket(Bucket=b)
    expect(lambda: s3.get_bucket_lifecycle_configuration(Bucket=b), "NoSuchLifecycleConfiguration", 404)
    r = s3.delete_bucket_lifecycle(Bucket=b)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204

    rules = [
        {"ID": "logs", "Status": "Enabled", "Filter": {"Prefix": "logs/"}, "Expiration": {"Days": 30}},
        {"ID": "tagged", "Status": "Disabled",
         "Filter": {"And": {"Prefix": "t/", "Tags": [{"Key": "k", "Value": "v"}], "ObjectSizeGreaterThan": 10}},
         "Transitions": [{"Days": 5, "StorageClass": "GLACIER"}],
         "NoncurrentVersionExpiration": {"NoncurrentDays": 3, "NewerNoncurrentVersions": 2}},
        {"ID": "mpu", "Status": "Enabled", "Filter": {}, "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2}},
        {"ID": "dm", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"ExpiredObjectDeleteMarker": True}},
        {"ID": "date", "Status": "Enabled", "Filter": {"ObjectSizeLessThan": 1000},
         "Expiration": {"Date": dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)}},
    ]
    r = s3.put_bucket_lifecycle_configuration(Bucket=b, LifecycleConfiguration={"Rules": rules})
    assert r["ResponseMetadata"]["HTTPHeaders"]["x-amz-transition-default-minimum-object-size"] == "all_storage_classes_128K"
    got = s3.get_bucket_lifecycle_configuration(Bucket=b)
    assert [x["ID"] for x in got["Rules"]] == ["logs", "tagged", "mpu", "dm", "date"]
    by = {x["ID"]: x for x in got["Rules"]}
    assert by["logs"]["Filter"] == {"Prefix": "logs/"} and by["logs"]["Expiration"] == {"Days": 30}
    assert by["tagged"]["Status"] == "Disabled"
    assert by["tagged"]["Filter"]["And"]["Tags"] == [{"Key": "k", "Value": "v"}]
    assert by["tagged"]["Transitions"] == [{"Days": 5, "StorageClass": "GLACIER"}]
    assert by["tagged"]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 3, "NewerNoncurrentVersions": 2}
    assert by["mpu"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 2}
    assert by["dm"]["Expiration"] == {"ExpiredObjectDeleteMarker": True}
    assert by["date"]["Expiration"]["Date"] == dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)

    def bad(rules, code, status=400):
        expect(lambda: s3.put_bucket_lifecycle_configuration(
            Bucket=b, LifecycleConfiguration={"Rules": rules}), code, status)

    ok = {"ID": "x", "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 1}}
    bad([ok, dict(ok)], "InvalidArgument")                               # duplicate ID
    bad([dict(ok, ID="x" * 256)], "InvalidArgument")                     # ID over 255
    bad([dict(ok, Expiration={"Days": 0})], "InvalidArgument")
    bad([dict(ok, Expiration={"Days": -1})], "InvalidArgument")
    bad([dict(ok, Expiration={"Date": dt.datetime(2030, 1, 1, 12, tzinfo=dt.timezone.utc)})], "InvalidArgument")
    bad([dict(ok, Status="On")], "MalformedXML")
    bad([{"ID": "x", "Status": "Enabled", "Filter": {}}], "MalformedXML")  # no action
    bad([dict(ok, Expiration={"Days": 1, "Date": dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)})], "MalformedXML")
    bad([{"ID": "x", "Status": "Enabled", "Filter": {}, "Transitions": [{"Days": 1}]}], "MalformedXML")
    bad([{"ID": "x", "Status": "Enabled", "Filter": {"Tag": {"Key": "k", "Value": "v"}},
          "Expiration": {"ExpiredObjectDeleteMarker": True}}], "InvalidRequest")
    bad([{"ID": "x", "Status": "Enabled", "Filter": {"Tag": {"Key": "k", "Value": "v"}},
          "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}], "InvalidRequest")
    bad([dict(ok, ID=f"r{i}") for i in range(1001)], "MalformedXML")
    # refused configurations changed nothing
    assert len(s3.get_bucket_lifecycle_configuration(Bucket=b)["Rules"]) == 5
    s3.delete_bucket_lifecycle(Bucket=b)
    expect(lambda: s3.get_bucket_lifecycle_configuration(Bucket=b), "NoSuchLifecycleConfiguration", 404)


# ---- expiration of current versions ---------------------------------------------------------------
def test_expiration_fires_on_time_only_on_matching_objects(ls3, lsrv):
    s3 = ls3
    b = unique_bucket("exp")
    s3.create_bucket(Bucket=b)
    s3.put_bucket_lifecycle_configuration(Bucket=b, LifecycleConfiguration={"Rules": [
        {"ID": "prefix", "Status": "Enabled", "Filter": {"Prefix": "a/"}, "Expiration": {"Days": 3}},
        {"ID": "tag", "Status": "Enabled",
         "Filter": {"And": {"Prefix": "b/", "Tags": [{"Key": "keep", "Value": "no"}]}}, "Expiration": {"Days": 3}},
        {"ID": "size", "Status": "Enabled",
         "Filter": {"And": {"Prefix": "c/", "ObjectSizeGreaterThan": 100}}, "Expiration": {"Days": 3}},
        {"ID": "off", "Status": "Disabled", "Filter": {"Prefix": "x/"}, "Expiration": {"Days": 1}},
    ]})
    put = s3.put_object(Bucket=b, Key="a/1", Body=b"a")
    # x-amz-expiration answers in real days: creation + 3 days, rounded up to midnight UTC
    exp = put["Expiration"]
    assert 'rule-id="prefix"' in exp and "GMT" in exp, exp
    day = dt.datetime.now(dt.timezone.utc).date() + dt.timedelta(days=4)
    assert day.strftime("%d %b %Y") in exp, exp
    assert "Expiration" in s3.head_object(Bucket=b, Key="a/1")
    s3.put_object(Bucket=b, Key="x/1", Body=b"x")
    assert "Expiration" not in s3.head_object(Bucket=b, Key="x/1")
    s3.put_object(Bucket=b, Key="b/t", Body=b"t", Tagging="keep=no")
    s3.put_object(Bucket=b, Key="b/u", Body=b"u", Tagging="keep=yes")
    s3.put_object(Bucket=b, Key="c/big", Body=b"B" * 200)
    s3.put_object(Bucket=b, Key="c/small", Body=b"s" * 10)
    start = time.monotonic()
    everything = {"a/1", "x/1", "b/t", "b/u", "c/big", "c/small"}
    time.sleep(1.5)
    assert keys_of(s3, b) == everything, "expired before its 3 (scaled) days"
    survivors = {"x/1", "b/u", "c/small"}
    assert wait_for(lambda: keys_of(s3, b) == survivors, 10), keys_of(s3, b)
    took = time.monotonic() - start
    assert took < 3 + 3, f"due after 3 s, done after {took:.1f} s (late by more than the test allows)"
    st = lsrv.admin_json("lifecycle", "status", b, "--json")
    assert st["rules"][f"{b}/prefix"]["expired"] == 1
    assert st["rules"][f"{b}/tag"]["expired"] == 1 and st["rules"][f"{b}/size"]["expired"] == 1
    assert st["rules"][f"{b}/size"]["bytes_expired"] == 200
    assert f"{b}/off" not in st["rules"]
    # Prometheus: sums on the open endpoint (no bucket names), per rule through the admin API
    import urllib.request
    text = urllib.request.urlopen(lsrv.endpoint + "/_strata/metrics", timeout=10).read().decode()
    assert 'strata_lifecycle_actions_total{kind="expired"}' in text and b not in text
    per_rule = lsrv.admin("lifecycle", "metrics")
    assert per_rule.returncode == 0, per_rule.stderr
    assert f'strata_lifecycle_actions_total{{bucket="{b}",rule="size",kind="expired"}} 1' in per_rule.stdout
    assert f'strata_lifecycle_bytes_expired_total{{bucket="{b}",rule="size"}} 200' in per_rule.stdout
    # a readable table too
    table = lsrv.admin("lifecycle", "status", b)
    assert table.returncode == 0 and f"{b}/prefix" in table.stdout
    ex = lsrv.admin_json("lifecycle", "explain", b, "x/1", "--json")
    off = [r for r in ex["rules"] if r["rule_id"] == "off"][0]
    assert "rule disabled" in off["why_not"]
    miss = [r for r in ex["rules"] if r["rule_id"] == "prefix"][0]
    assert miss["filter_matches"] is False and miss["filter_miss"] == "prefix"
    assert ex["note"] == "no rule will act on this version"


def test_noncurrent_versions_newer_noncurrent_and_delete_markers(ls3, lsrv):
    s3 = ls3
    b = unique_bucket("nc")
    s3.create_bucket(Bucket=b)
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    ids = [s3.put_object(Bucket=b, Key="k", Body=f"v{i}".encode())["VersionId"] for i in range(4)]
    d1 = s3.put_object(Bucket=b, Key="d", Body=b"d")["VersionId"]
    s3.delete_object(Bucket=b, Key="d")  # a delete marker over d1
    pv = lsrv.admin_json("lifecycle", "preview", b, "--days", "10", "--json")
    assert pv["actions"] == []  # no configuration yet: nothing would happen
    s3.put_bucket_lifecycle_configuration(Bucket=b, LifecycleConfiguration={"Rules": [
        {"ID": "nc", "Status": "Enabled", "Filter": {"Prefix": "k"},
         "NoncurrentVersionExpiration": {"NoncurrentDays": 2, "NewerNoncurrentVersions": 1}},
        {"ID": "dm", "Status": "Enabled", "Filter": {"Prefix": "d"},
         "NoncurrentVersionExpiration": {"NoncurrentDays": 2},
         "Expiration": {"ExpiredObjectDeleteMarker": True}},
    ]})
    pv = lsrv.admin_json("lifecycle", "preview", b, "--days", "10", "--json")
    planned = {(a["key"], a["version_id"], a["action"]) for a in pv["actions"]}
    assert ("k", ids[0], "expire_noncurrent") in planned and ("k", ids[1], "expire_noncurrent") in planned
    assert ("d", d1, "expire_noncurrent") in planned
    assert not any(v == ids[2] or v == ids[3] for _, v, _ in planned)  # newest noncurrent kept, current kept

    def state():
        vs, dms = versions_of(s3, b)
        return sorted((v["Key"], v["VersionId"]) for v in vs), sorted(d["Key"] for d in dms)

    want = (sorted([("k", ids[2]), ("k", ids[3])]), [])
    assert wait_for(lambda: state() == want, 12), state()
    assert s3.get_object(Bucket=b, Key="k")["Body"].read() == b"v3"
    st = lsrv.admin_json("lifecycle", "status", b, "--json")["rules"]
    assert st[f"{b}/nc"]["noncurrent_expired"] == 2
    assert st[f"{b}/dm"]["noncurrent_expired"] == 1 and st[f"{b}/dm"]["delete_markers_removed"] == 1


def test_locked_versions_are_skipped_then_expired_when_the_lock_ends(ls3, lsrv):
    s3 = ls3
    b = unique_bucket("lk")
    s3.create_bucket(Bucket=b, ObjectLockEnabledForBucket=True)
    until = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=7)
    v1 = s3.put_object(Bucket=b, Key="k", Body=b"old", ObjectLockMode="GOVERNANCE",
                       ObjectLockRetainUntilDate=until)["VersionId"]
    held = s3.put_object(Bucket=b, Key="h", Body=b"held", ObjectLockLegalHoldStatus="ON")["VersionId"]
    s3.put_object(Bucket=b, Key="k", Body=b"new")
    s3.put_object(Bucket=b, Key="h", Body=b"new")
    s3.put_bucket_lifecycle_configuration(Bucket=b, LifecycleConfiguration={"Rules": [
        {"ID": "nc", "Status": "Enabled", "Filter": {}, "NoncurrentVersionExpiration": {"NoncurrentDays": 1}}]})
    time.sleep(3.5)
    vs, _ = versions_of(s3, b)
    assert {v["VersionId"] for v in vs} >= {v1, held}, "a locked version was expired"
    st = lsrv.admin_json("lifecycle", "status", b, "--json")["rules"][f"{b}/nc"]
    assert st["locked"] >= 2 and st["errors"] == 0 and st["lag_ms"] > 0
    ex = lsrv.admin_json("lifecycle", "explain", b, "h", "--version-id", held, "--json")
    assert ex["blocked_by"] == ["legal hold"] and ex["due_now"]["action"] == "expire_noncurrent"
    # the retention ends: the engine retries and expires it; the legal hold keeps its version
    assert wait_for(lambda: v1 not in {v["VersionId"] for v in versions_of(s3, b)[0]}, 12)
    assert held in {v["VersionId"] for v in versions_of(s3, b)[0]}
    s3.put_object_legal_hold(Bucket=b, Key="h", VersionId=held, LegalHold={"Status": "OFF"})
    assert wait_for(lambda: held not in {v["VersionId"] for v in versions_of(s3, b)[0]}, 8)


def test_abort_incomplete_multipart_upload(ls3):
    s3 = ls3
    b = unique_bucket("mpu")
    s3.create_bucket(Bucket=b)
    old = s3.create_multipart_upload(Bucket=b, Key="tmp/old")["UploadId"]
    s3.upload_part(Bucket=b, Key="tmp/old", UploadId=old, PartNumber=1, Body=b"p" * 100)
    other = s3.create_multipart_upload(Bucket=b, Key="keep/x")["UploadId"]
    s3.put_bucket_lifecycle_configuration(Bucket=b, LifecycleConfiguration={"Rules": [
        {"ID": "mpu", "Status": "Enabled", "Filter": {"Prefix": "tmp/"},
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}]})
    ups = lambda: {u["UploadId"] for u in s3.list_multipart_uploads(Bucket=b).get("Uploads", [])}
    assert wait_for(lambda: ups() == {other}, 8), ups()


def test_overwritten_object_is_not_expired_on_an_old_decision(ls3):
    """Every action is conditional on the version it was decided for: an object rewritten just
    before its due time is judged by its new creation time."""
    s3 = ls3
    b = unique_bucket("ow")
    s3.create_bucket(Bucket=b)
    s3.put_bucket_lifecycle_configuration(Bucket=b, LifecycleConfiguration={"Rules": [
        {"ID": "e", "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 3}}]})
    s3.put_object(Bucket=b, Key="k", Body=b"1")
    for i in range(5):  # rewritten every second: never 3 days old
        time.sleep(1)
        s3.put_object(Bucket=b, Key="k", Body=f"{i}".encode())
    assert s3.get_object(Bucket=b, Key="k")["Body"].read() == b"4"
    assert wait_for(lambda: "k" not in keys_of(s3, b), 8)


# ---- crash in the middle of a pass ----------------------------------------------------------------
def test_kill9_mid_pass_loses_and_duplicates_nothing(make_server):
    srv = make_server(extra_args=DAY_ARGS)
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    b = "crashpass"
    s3.create_bucket(Bucket=b)
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    n = 900  # several pages of 256
    keys = [f"k{i:04d}" for i in range(n)]
    with cf.ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda k: s3.put_object(Bucket=b, Key=k, Body=k.encode()), keys))
    # slow the pass down so that the crash lands inside it
    r = srv.admin("worker", "set", "lifecycle", "--tranquility", "3")
    assert r.returncode == 0, r.stderr
    s3.put_bucket_lifecycle_configuration(Bucket=b, LifecycleConfiguration={"Rules": [
        {"ID": "e", "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 1}}]})

    def markers() -> int:
        total, kwargs = 0, {}
        while True:
            page = s3.list_object_versions(Bucket=b, **kwargs)
            total += len(page.get("DeleteMarkers", []))
            if not page.get("IsTruncated"):
                return total
            kwargs = {"KeyMarker": page["NextKeyMarker"], "VersionIdMarker": page["NextVersionIdMarker"]}

    seen = wait_for(lambda: (lambda m: m if 0 < m else 0)(markers()), 20, step=0.05)
    srv.kill9()
    assert 0 < seen < n, f"{seen} of {n} done when the crash came: the pass was not in progress"
    srv.start()
    assert wait_for(lambda: markers() >= n, 30), markers()
    time.sleep(2.5)  # more passes: nothing may be done twice
    per_key: dict[str, list[str]] = {}
    kwargs = {}
    while True:
        page = s3.list_object_versions(Bucket=b, **kwargs)
        for d in page.get("DeleteMarkers", []):
            per_key.setdefault(d["Key"], []).append("dm")
        for v in page.get("Versions", []):
            per_key.setdefault(v["Key"], []).append("v")
        if not page.get("IsTruncated"):
            break
        kwargs = {"KeyMarker": page["NextKeyMarker"], "VersionIdMarker": page["NextVersionIdMarker"]}
    assert sorted(per_key) == keys
    bad = {k: v for k, v in per_key.items() if sorted(v) != ["dm", "v"]}
    assert not bad, f"{len(bad)} keys lost or got a duplicate action, e.g. {list(bad.items())[:3]}"
    st = srv.admin_json("lifecycle", "status", b, "--json")["rules"][f"{b}/e"]
    assert st["errors"] == 0
