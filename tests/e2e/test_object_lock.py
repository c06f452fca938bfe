"""Object Lock with boto3 and the AWS CLI (issue 5): every rule, every forbidden action, a restart."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import pytest

from conftest import IS_MOTO, empty_bucket, make_s3, unique_bucket
from botocore.exceptions import ClientError

from harness import Server
from s3util import expect_error

STRICT = not IS_MOTO  # see test_versioning.py: AWS-only details checked against strata only


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def until(days: float) -> dt.datetime:
    return (now() + dt.timedelta(days=days)).replace(microsecond=0)


def close(a: dt.datetime, b: dt.datetime, seconds: float = 2) -> bool:
    return abs((a - b).total_seconds()) <= seconds


@pytest.fixture
def lbucket(s3):
    name = unique_bucket("lock")
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    yield name
    empty_bucket(s3, name)  # COMPLIANCE versions legitimately survive; the data dir is temporary


def retention(s3, bucket, key, version_id) -> dict:
    """{"Mode", "RetainUntilDate"} via GetObjectRetention, cross-checked with HEAD.
    (moto answers GetObjectRetention with 500, so against moto only HEAD is used.)"""
    h = s3.head_object(Bucket=bucket, Key=key, VersionId=version_id)
    from_head = {"Mode": h.get("ObjectLockMode"), "RetainUntilDate": h.get("ObjectLockRetainUntilDate")}
    if not STRICT:
        return from_head
    r = s3.get_object_retention(Bucket=bucket, Key=key, VersionId=version_id)["Retention"]
    assert r["Mode"] == from_head["Mode"] and close(r["RetainUntilDate"], from_head["RetainUntilDate"])
    return r


def assert_readable(s3, bucket, key, version_id, data):
    assert s3.get_object(Bucket=bucket, Key=key, VersionId=version_id)["Body"].read() == data


def default_retention(cfg: dict) -> dict:
    d = dict(cfg["Rule"]["DefaultRetention"])
    if not STRICT:  # moto adds the unset one of Days/Years as 0; AWS returns only the one that is set
        d = {k: v for k, v in d.items() if v != 0}
    return d


def test_lock_bucket_configuration(s3, lbucket, bucket):
    assert s3.get_bucket_versioning(Bucket=lbucket)["Status"] == "Enabled"
    cfg = s3.get_object_lock_configuration(Bucket=lbucket)["ObjectLockConfiguration"]
    assert cfg["ObjectLockEnabled"] == "Enabled" and "Rule" not in cfg
    s3.put_object_lock_configuration(Bucket=lbucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 2}}})
    cfg = s3.get_object_lock_configuration(Bucket=lbucket)["ObjectLockConfiguration"]
    assert default_retention(cfg) == {"Mode": "GOVERNANCE", "Days": 2}
    s3.put_object_lock_configuration(Bucket=lbucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Years": 1}}})
    cfg = s3.get_object_lock_configuration(Bucket=lbucket)["ObjectLockConfiguration"]
    assert default_retention(cfg) == {"Mode": "COMPLIANCE", "Years": 1}
    # a plain bucket has no lock configuration
    expect_error(s3.get_object_lock_configuration, "ObjectLockConfigurationNotFoundError", 404, Bucket=bucket)
    if STRICT:  # moto lets versioning be suspended on a lock bucket
        # versioning cannot be suspended on a lock bucket
        expect_error(s3.put_bucket_versioning, "InvalidBucketState", 409, Bucket=lbucket,
                     VersioningConfiguration={"Status": "Suspended"})
        assert s3.get_bucket_versioning(Bucket=lbucket)["Status"] == "Enabled"


@pytest.mark.strata_only(reason="moto accepts invalid lock configurations and lock headers on unlocked buckets")
def test_lock_configuration_negative(s3, lbucket, bucket):
    # S3's codes: Days and Years together or an unknown mode are MalformedXML; a period out of
    # range (Days 1..36500, Years 1..100) is InvalidRetentionPeriod
    for rule, code in (({"Mode": "GOVERNANCE", "Days": 1, "Years": 1}, "MalformedXML"),
                       ({"Mode": "ROCK", "Days": 1}, "MalformedXML"),
                       ({"Mode": "GOVERNANCE", "Days": 0}, "InvalidRetentionPeriod"),
                       ({"Mode": "GOVERNANCE", "Days": 36501}, "InvalidRetentionPeriod"),
                       ({"Mode": "COMPLIANCE", "Years": -1}, "InvalidRetentionPeriod"),
                       ({"Mode": "COMPLIANCE", "Years": 101}, "InvalidRetentionPeriod")):
        expect_error(s3.put_object_lock_configuration, code, 400, Bucket=lbucket,
                     ObjectLockConfiguration={"ObjectLockEnabled": "Enabled",
                                              "Rule": {"DefaultRetention": rule}})
    # an unknown mode in PutObjectRetention is MalformedXML too
    s3.put_object(Bucket=lbucket, Key="m", Body=b"x")
    expect_error(s3.put_object_retention, "MalformedXML", 400, Bucket=lbucket, Key="m",
                 Retention={"Mode": "ROCK", "RetainUntilDate": until(1)})
    # lock headers on a bucket without Object Lock
    expect_error(s3.put_object, "InvalidRequest", 400, Bucket=bucket, Key="k", Body=b"x",
                 ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=until(1))
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="k")
    s3.put_object(Bucket=bucket, Key="plain", Body=b"x")
    expect_error(s3.put_object_retention, "InvalidRequest", 400, Bucket=bucket, Key="plain",
                 Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until(1)})
    # a retain-until date in the past is refused
    expect_error(s3.put_object, "InvalidArgument", 400, Bucket=lbucket, Key="past", Body=b"x",
                 ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=now() - dt.timedelta(days=1))


def test_default_retention_applies(s3, lbucket):
    s3.put_object_lock_configuration(Bucket=lbucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    t0 = now()
    v = s3.put_object(Bucket=lbucket, Key="d", Body=b"default")["VersionId"]
    h = s3.head_object(Bucket=lbucket, Key="d", VersionId=v)
    assert h["ObjectLockMode"] == "GOVERNANCE"
    assert close(h["ObjectLockRetainUntilDate"], t0 + dt.timedelta(days=1), seconds=120)
    r = retention(s3, lbucket, "d", v)
    assert r["Mode"] == "GOVERNANCE"
    expect_error(s3.delete_object, "AccessDenied", 403, Bucket=lbucket, Key="d", VersionId=v)
    assert_readable(s3, lbucket, "d", v, b"default")


def test_compliance_rules(s3, lbucket):
    b = lbucket
    ru = until(1)
    v = s3.put_object(Bucket=b, Key="c", Body=b"compliant", ObjectLockMode="COMPLIANCE",
                      ObjectLockRetainUntilDate=ru)["VersionId"]
    h = s3.head_object(Bucket=b, Key="c", VersionId=v)
    assert h["ObjectLockMode"] == "COMPLIANCE" and close(h["ObjectLockRetainUntilDate"], ru)
    # cannot delete the version, not even with governance bypass (admin/owner)
    expect_error(s3.delete_object, "AccessDenied", 403, Bucket=b, Key="c", VersionId=v)
    expect_error(s3.delete_object, "AccessDenied", 403, Bucket=b, Key="c", VersionId=v,
                 BypassGovernanceRetention=True)
    assert_readable(s3, b, "c", v, b"compliant")
    if STRICT:  # moto does not protect retention settings at all
        # cannot shorten, cannot switch to GOVERNANCE, cannot remove
        expect_error(s3.put_object_retention, "AccessDenied", 403, Bucket=b, Key="c", VersionId=v,
                     Retention={"Mode": "COMPLIANCE", "RetainUntilDate": ru - dt.timedelta(hours=1)})
        expect_error(s3.put_object_retention, "AccessDenied", 403, Bucket=b, Key="c", VersionId=v,
                     BypassGovernanceRetention=True,
                     Retention={"Mode": "GOVERNANCE", "RetainUntilDate": ru + dt.timedelta(days=1)})
        with pytest.raises(ClientError):
            s3.put_object_retention(Bucket=b, Key="c", VersionId=v, BypassGovernanceRetention=True,
                                    Retention={})
    r = retention(s3, b, "c", v)
    assert r["Mode"] == "COMPLIANCE" and close(r["RetainUntilDate"], ru)
    # can extend
    longer = ru + dt.timedelta(days=3)
    s3.put_object_retention(Bucket=b, Key="c", VersionId=v,
                            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": longer})
    r = retention(s3, b, "c", v)
    assert r["Mode"] == "COMPLIANCE" and close(r["RetainUntilDate"], longer)
    # DELETE without a version id only adds a delete marker (allowed)
    d = s3.delete_object(Bucket=b, Key="c")
    assert d["DeleteMarker"] is True
    expect_error(s3.get_object, "NoSuchKey", 404, Bucket=b, Key="c")
    assert_readable(s3, b, "c", v, b"compliant")
    # "overwriting" a locked key creates a new version; the locked one is untouched
    s3.delete_object(Bucket=b, Key="c", VersionId=d["VersionId"])
    v2 = s3.put_object(Bucket=b, Key="c", Body=b"newer")["VersionId"]
    assert v2 != v
    assert s3.get_object(Bucket=b, Key="c")["Body"].read() == b"newer"
    assert_readable(s3, b, "c", v, b"compliant")
    expect_error(s3.delete_object, "AccessDenied", 403, Bucket=b, Key="c", VersionId=v)


def test_governance_rules(s3, lbucket):
    b = lbucket
    ru = until(2)
    v = s3.put_object(Bucket=b, Key="g", Body=b"governed", ObjectLockMode="GOVERNANCE",
                      ObjectLockRetainUntilDate=ru)["VersionId"]
    expect_error(s3.delete_object, "AccessDenied", 403, Bucket=b, Key="g", VersionId=v)
    # shortening needs the bypass header
    shorter = ru - dt.timedelta(days=1)
    if STRICT:  # moto does not protect retention settings at all
        expect_error(s3.put_object_retention, "AccessDenied", 403, Bucket=b, Key="g", VersionId=v,
                     Retention={"Mode": "GOVERNANCE", "RetainUntilDate": shorter})
        r = retention(s3, b, "g", v)
        assert close(r["RetainUntilDate"], ru)
    s3.put_object_retention(Bucket=b, Key="g", VersionId=v, BypassGovernanceRetention=True,
                            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": shorter})
    r = retention(s3, b, "g", v)
    assert close(r["RetainUntilDate"], shorter)
    # extending needs no bypass
    s3.put_object_retention(Bucket=b, Key="g", VersionId=v,
                            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": ru})
    # changing GOVERNANCE to another mode (even COMPLIANCE) needs the bypass, as S3
    v3 = s3.put_object(Bucket=b, Key="g3", Body=b"up", ObjectLockMode="GOVERNANCE",
                       ObjectLockRetainUntilDate=ru)["VersionId"]
    if STRICT:
        expect_error(s3.put_object_retention, "AccessDenied", 403, Bucket=b, Key="g3", VersionId=v3,
                     Retention={"Mode": "COMPLIANCE", "RetainUntilDate": ru})
    s3.put_object_retention(Bucket=b, Key="g3", VersionId=v3, BypassGovernanceRetention=True,
                            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": ru})
    expect_error(s3.delete_object, "AccessDenied", 403, Bucket=b, Key="g3", VersionId=v3,
                 BypassGovernanceRetention=True)
    assert_readable(s3, b, "g", v, b"governed")
    # the owner deletes a GOVERNANCE version with the bypass header
    d = s3.delete_object(Bucket=b, Key="g", VersionId=v, BypassGovernanceRetention=True)
    assert d["VersionId"] == v
    expect_error(s3.get_object, "NoSuchVersion", 404, Bucket=b, Key="g", VersionId=v)


def test_legal_hold(s3, lbucket):
    b = lbucket
    v = s3.put_object(Bucket=b, Key="h", Body=b"held", ObjectLockLegalHoldStatus="ON")["VersionId"]
    assert s3.get_object_legal_hold(Bucket=b, Key="h", VersionId=v)["LegalHold"]["Status"] == "ON"
    assert s3.head_object(Bucket=b, Key="h", VersionId=v)["ObjectLockLegalHoldStatus"] == "ON"
    expect_error(s3.delete_object, "AccessDenied", 403, Bucket=b, Key="h", VersionId=v)
    expect_error(s3.delete_object, "AccessDenied", 403, Bucket=b, Key="h", VersionId=v,
                 BypassGovernanceRetention=True)
    assert_readable(s3, b, "h", v, b"held")
    # a hold set later via the API, on an object with expired-looking (no) retention
    v2 = s3.put_object(Bucket=b, Key="h2", Body=b"later")["VersionId"]
    s3.put_object_legal_hold(Bucket=b, Key="h2", VersionId=v2, LegalHold={"Status": "ON"})
    expect_error(s3.delete_object, "AccessDenied", 403, Bucket=b, Key="h2", VersionId=v2)
    # removing the hold allows deletion
    s3.put_object_legal_hold(Bucket=b, Key="h", VersionId=v, LegalHold={"Status": "OFF"})
    assert s3.get_object_legal_hold(Bucket=b, Key="h", VersionId=v)["LegalHold"]["Status"] == "OFF"
    s3.delete_object(Bucket=b, Key="h", VersionId=v)
    expect_error(s3.get_object, "NoSuchVersion", 404, Bucket=b, Key="h", VersionId=v)


def test_legal_hold_blocks_even_with_governance_bypass(s3, lbucket):
    b = lbucket
    v = s3.put_object(Bucket=b, Key="both", Body=b"x", ObjectLockMode="GOVERNANCE",
                      ObjectLockRetainUntilDate=until(1), ObjectLockLegalHoldStatus="ON")["VersionId"]
    expect_error(s3.delete_object, "AccessDenied", 403, Bucket=b, Key="both", VersionId=v,
                 BypassGovernanceRetention=True)
    s3.put_object_legal_hold(Bucket=b, Key="both", VersionId=v, LegalHold={"Status": "OFF"})
    s3.delete_object(Bucket=b, Key="both", VersionId=v, BypassGovernanceRetention=True)


def test_multi_delete_reports_locked_versions(s3, lbucket):
    b = lbucket
    locked = s3.put_object(Bucket=b, Key="locked", Body=b"L", ObjectLockMode="COMPLIANCE",
                           ObjectLockRetainUntilDate=until(1))["VersionId"]
    held = s3.put_object(Bucket=b, Key="held", Body=b"H", ObjectLockLegalHoldStatus="ON")["VersionId"]
    free = s3.put_object(Bucket=b, Key="free", Body=b"F")["VersionId"]
    r = s3.delete_objects(Bucket=b, Delete={"Objects": [
        {"Key": "locked", "VersionId": locked}, {"Key": "held", "VersionId": held},
        {"Key": "free", "VersionId": free}]})
    errors = {(e["Key"], e.get("VersionId") if STRICT else None): e["Code"] for e in r.get("Errors", [])}
    if STRICT:  # moto omits VersionId in <Error>
        assert errors == {("locked", locked): "AccessDenied", ("held", held): "AccessDenied"}
    else:
        assert errors == {("locked", None): "AccessDenied", ("held", None): "AccessDenied"}
    assert [(d["Key"], d.get("VersionId")) for d in r["Deleted"]] == [("free", free)]
    assert_readable(s3, b, "locked", locked, b"L")
    assert_readable(s3, b, "held", held, b"H")


def test_object_lock_with_awscli(clients, s3):
    b = unique_bucket("lcli")
    clients.aws("s3api", "create-bucket", "--bucket", b, "--object-lock-enabled-for-bucket")
    try:
        cfg = json.loads(clients.aws("s3api", "get-object-lock-configuration", "--bucket", b).stdout)
        assert cfg["ObjectLockConfiguration"]["ObjectLockEnabled"] == "Enabled"
        body = clients.home / "body"
        body.write_bytes(b"cli locked")
        ru = until(1).strftime("%Y-%m-%dT%H:%M:%SZ")
        v = json.loads(clients.aws("s3api", "put-object", "--bucket", b, "--key", "k", "--body", str(body),
                                   "--object-lock-mode", "COMPLIANCE",
                                   "--object-lock-retain-until-date", ru).stdout)["VersionId"]
        if STRICT:  # moto answers GetObjectRetention with 500
            ret = json.loads(clients.aws("s3api", "get-object-retention", "--bucket", b, "--key", "k",
                                         "--version-id", v).stdout)
            assert ret["Retention"]["Mode"] == "COMPLIANCE"
        head = json.loads(clients.aws("s3api", "head-object", "--bucket", b, "--key", "k",
                                      "--version-id", v).stdout)
        assert head["ObjectLockMode"] == "COMPLIANCE"
        r = clients.aws("s3api", "delete-object", "--bucket", b, "--key", "k", "--version-id", v,
                        "--bypass-governance-retention", check=False)
        assert r.returncode != 0 and b"AccessDenied" in r.stderr
        out = clients.home / "out"
        clients.aws("s3api", "get-object", "--bucket", b, "--key", "k", "--version-id", v, str(out))
        assert out.read_bytes() == b"cli locked"
    finally:
        empty_bucket(s3, b)


@pytest.mark.strata_only(reason="restart on the same data dir; moto is in-memory")
def test_retention_survives_restart(fresh_server):
    srv = fresh_server
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    s3.create_bucket(Bucket="lock-restart", ObjectLockEnabledForBucket=True)
    ru = until(1)
    vc = s3.put_object(Bucket="lock-restart", Key="c", Body=b"C", ObjectLockMode="COMPLIANCE",
                       ObjectLockRetainUntilDate=ru)["VersionId"]
    vg = s3.put_object(Bucket="lock-restart", Key="g", Body=b"G", ObjectLockMode="GOVERNANCE",
                       ObjectLockRetainUntilDate=ru)["VersionId"]
    vh = s3.put_object(Bucket="lock-restart", Key="h", Body=b"H", ObjectLockLegalHoldStatus="ON")["VersionId"]
    expect_error(s3.delete_object, "AccessDenied", 403, Bucket="lock-restart", Key="c", VersionId=vc)
    srv.restart()
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    r = s3.get_object_retention(Bucket="lock-restart", Key="c", VersionId=vc)["Retention"]
    assert r["Mode"] == "COMPLIANCE" and close(r["RetainUntilDate"], ru)
    assert s3.get_object_legal_hold(Bucket="lock-restart", Key="h", VersionId=vh)["LegalHold"]["Status"] == "ON"
    for key, vid in (("c", vc), ("g", vg), ("h", vh)):
        expect_error(s3.delete_object, "AccessDenied", 403, Bucket="lock-restart", Key=key, VersionId=vid)
    expect_error(s3.delete_object, "AccessDenied", 403, Bucket="lock-restart", Key="c", VersionId=vc,
                 BypassGovernanceRetention=True)
    srv.restart(crash=True)
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    expect_error(s3.put_object_retention, "AccessDenied", 403, Bucket="lock-restart", Key="c", VersionId=vc,
                 Retention={"Mode": "COMPLIANCE", "RetainUntilDate": ru - dt.timedelta(hours=2)})
    assert s3.get_object(Bucket="lock-restart", Key="c", VersionId=vc)["Body"].read() == b"C"
    s3.delete_object(Bucket="lock-restart", Key="g", VersionId=vg, BypassGovernanceRetention=True)


@pytest.mark.strata_only(reason="strata admin backup/restore")
def test_compliance_survives_backup_restore_and_admin_verbs(fresh_server, tmp_path):
    srv = fresh_server
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    s3.create_bucket(Bucket="lock-backup", ObjectLockEnabledForBucket=True)
    ru = until(1)
    v = s3.put_object(Bucket="lock-backup", Key="c", Body=b"kept", ObjectLockMode="COMPLIANCE",
                      ObjectLockRetainUntilDate=ru)["VersionId"]
    # no admin verb removes it: scrub --repair leaves it alone
    r = srv.admin("scrub", "--repair", timeout=300)
    assert r.returncode == 0, r.stderr
    assert s3.get_object(Bucket="lock-backup", Key="c", VersionId=v)["Body"].read() == b"kept"
    backup = tmp_path / "backup"
    r = srv.admin("backup", str(backup), timeout=300)
    assert r.returncode == 0, r.stderr
    srv.stop()
    # The disaster a metadata backup covers: the metadata is lost while the disks and the master
    # key (kept apart from backups, by design) survive.
    shutil.rmtree(srv.data_dir / "meta")
    restored = srv
    r = restored.admin("restore", str(backup), "--data-dir", str(restored.data_dir), offline=True, timeout=300)
    assert r.returncode == 0, r.stderr
    restored.start()
    try:
        s3 = make_s3(restored.endpoint, restored.access_key, restored.secret_key)
        assert s3.get_object(Bucket="lock-backup", Key="c", VersionId=v)["Body"].read() == b"kept"
        rr = s3.get_object_retention(Bucket="lock-backup", Key="c", VersionId=v)["Retention"]
        assert rr["Mode"] == "COMPLIANCE" and close(rr["RetainUntilDate"], ru)
        expect_error(s3.delete_object, "AccessDenied", 403, Bucket="lock-backup", Key="c", VersionId=v,
                     BypassGovernanceRetention=True)
    finally:
        restored.stop()
