"""Usage metering (issue 16, docs/usage.md): per bucket (and per user as the buckets' owner) the
bytes stored by storage class, objects and versions, requests by billing class and bytes out,
exact after known traffic, in `strata admin usage` and the metrics, and still exact after a
kill -9 (the stored usage is committed with the writes it counts)."""

from __future__ import annotations

import re

import pytest
from botocore.exceptions import ClientError

from conftest import make_s3

pytestmark = pytest.mark.strata_only(reason="strata's usage metering")


def usage(srv, *flags) -> dict[str, dict]:
    out = srv.admin_json("--json", "usage", *flags)
    return {b["bucket"]: b for b in out["buckets"]}


def test_usage_after_known_traffic_survives_kill9_and_filters(fresh_server):
    srv = fresh_server
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    s3.create_bucket(Bucket="meter")
    s3.put_bucket_versioning(Bucket="meter", VersioningConfiguration={"Status": "Enabled"})
    sizes = {"a": 1000, "b": 2500, "c": 4096}
    for k, n in sizes.items():
        s3.put_object(Bucket="meter", Key=k, Body=b"x" * n)
    s3.put_object(Bucket="meter", Key="a", Body=b"y" * 300)  # a second version of a
    s3.put_object(Bucket="meter", Key="ia", Body=b"z" * 700, StorageClass="STANDARD_IA")
    for k in ("a", "b"):
        s3.get_object(Bucket="meter", Key=k)["Body"].read()
    with pytest.raises(ClientError):
        s3.get_object(Bucket="meter", Key="nope")
    s3.list_objects_v2(Bucket="meter")
    s3.delete_object(Bucket="meter", Key="c")  # a delete marker: c is no longer current

    u = usage(srv, "--bucket", "meter")["meter"]
    assert (u["objects"], u["versions"], u["delete_markers"]) == (3, 5, 1), u
    assert u["bytes"] == {"STANDARD": 1000 + 2500 + 4096 + 300, "STANDARD_IA": 700}, u
    r = u["requests"]
    # Writes: create, versioning, 5 PUTs; LIST: 1. Reads: 2 GETs and the NoSuchKey. Delete: 1.
    assert (r["write_list"], r["read"], r["delete"]) == (8, 3, 1), r
    assert r["bytes_in"] >= 1000 + 2500 + 4096 + 300 + 700
    assert 300 + 2500 <= r["bytes_out"] < 300 + 2500 + 4096, r
    assert u["owner_name"] == "admin"

    # The metrics carry the same figures, by bucket and storage class.
    text = srv.admin_json("--json", "metrics")["prometheus"]
    def metric(name, **labels):
        for line in text.splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError((name, labels))
    assert metric("strata_bucket_bytes", bucket="meter", storage_class="STANDARD_IA") == 700
    assert metric("strata_bucket_objects", bucket="meter") == 3

    # kill -9: the stored usage is exact after the restart (committed with the writes).
    s3.put_object(Bucket="meter", Key="late", Body=b"L" * 123)
    srv.restart(crash=True)
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    u = usage(srv, "--bucket", "meter")["meter"]
    assert (u["objects"], u["versions"]) == (4, 6), u
    assert u["bytes"]["STANDARD"] == 1000 + 2500 + 4096 + 300 + 123

    # Per user: only the buckets the user owns.
    bob = srv.admin_json("--json", "user", "add", "bob")
    bs3 = make_s3(srv.endpoint, bob["access_key"], bob["secret_key"])
    bs3.create_bucket(Bucket="bobs")
    bs3.put_object(Bucket="bobs", Key="k", Body=b"b" * 10)
    mine = usage(srv, "--user", "bob")
    assert list(mine) == ["bobs"] and mine["bobs"]["bytes"] == {"STANDARD": 10}
    assert "bobs" in usage(srv) and "meter" in usage(srv)

    # Samples: with --since, the per-minute samples of the period.
    out = srv.admin_json("--json", "usage", "--bucket", "meter", "--since", "10m")
    samples = out["buckets"][0]["samples"]
    assert samples and samples[-1]["versions"] == 6
    # The table form names the bucket and its owner.
    table = srv.admin("usage", "--bucket", "meter")
    assert table.returncode == 0 and re.search(r"^meter\s+admin\s+4\s+6\s", table.stdout, re.M), table.stdout
    r = srv.admin("usage", "--user", "nobody")
    assert r.returncode != 0 and "no such user" in r.stdout + r.stderr
