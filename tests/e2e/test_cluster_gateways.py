"""Cluster mode through two gateways: `scripts/local-cluster.sh up` starts three etcd members, six
storage nodes (the first hosting the key service) and two gateways; both serve the same buckets
with identical results, whichever gateway wrote.

One cluster for the whole module (it takes a few seconds to start); every test uses its own
buckets. The gateway kill test runs last and stops the first gateway for good.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

import harness
from conftest import Clients

pytestmark = pytest.mark.strata_only("cluster mode is strata's own")

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "local-cluster.sh"


def _env_file(path: Path) -> dict:
    out = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            out[k] = v.strip('"')
    return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    d = tmp_path_factory.mktemp("cluster")
    env = harness.scrubbed_environ()
    env["STRATA_BIN"] = str(harness.strata_binary())
    # Deleted data is destroyed (and recorded) a second after its deletion.
    env["STRATA_GATEWAY_ARGS"] = "--gc-grace-ms 1000"
    r = subprocess.run(["bash", str(SCRIPT), "up", str(d)], env=env, capture_output=True,
                       text=True, timeout=180, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        subprocess.run(["bash", str(SCRIPT), "down", str(d)], env=env, timeout=60)
        raise AssertionError(f"local-cluster.sh up failed:\n{r.stdout}\n{r.stderr}")
    info = _env_file(d / "cluster.env")
    info["dir"] = d
    try:
        yield info
    finally:
        subprocess.run(["bash", str(SCRIPT), "down", str(d)], env=env, timeout=60,
                       capture_output=True)


def _client(cluster, i: int):
    url = cluster["STRATA_GATEWAYS"].split(",")[i]
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id=cluster["STRATA_ACCESS_KEY"],
                        aws_secret_access_key=cluster["STRATA_SECRET_KEY"],
                        config=Config(s3={"addressing_style": "path"},
                                      retries={"max_attempts": 1},
                                      connect_timeout=5, read_timeout=30))


def _admin(cluster, i: int, *args: str) -> subprocess.CompletedProcess:
    url = cluster["STRATA_GATEWAYS"].split(",")[i]
    cmd = [str(harness.strata_binary()), "admin", f"--endpoint={url}",
           f"--access-key={cluster['STRATA_ACCESS_KEY']}",
           f"--secret-key={cluster['STRATA_SECRET_KEY']}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, env=harness.scrubbed_environ())


def test_script_writes_the_environment_it_promises(cluster):
    assert len(cluster["STRATA_GATEWAYS"].split(",")) == 2
    assert len(cluster["STRATA_NODE_PIDS"].split()) == 6
    assert len(cluster["STRATA_ETCD_PIDS"].split()) == 3
    assert len(cluster["STRATA_GATEWAY_PIDS"].split()) == 2
    for pid in (cluster["STRATA_NODE_PIDS"] + " " + cluster["STRATA_ETCD_PIDS"]).split():
        os.kill(int(pid), 0)  # alive
    mode = (cluster["dir"] / "cluster.env").stat().st_mode & 0o777
    assert mode == 0o600, "cluster.env holds the admin secret"


def test_objects_written_through_one_gateway_read_through_the_other(cluster):
    g1, g2 = _client(cluster, 0), _client(cluster, 1)
    g1.create_bucket(Bucket="two-gw")
    bodies = {f"k/{i:03d}": os.urandom(1000 + 70_000 * i) for i in range(6)}
    etags = {}
    for i, (k, b) in enumerate(bodies.items()):
        writer = (g1, g2)[i % 2]
        etags[k] = writer.put_object(Bucket="two-gw", Key=k, Body=b,
                                     Metadata={"n": str(i)})["ETag"]
    for k, b in bodies.items():
        for reader in (g1, g2):
            got = reader.get_object(Bucket="two-gw", Key=k)
            assert got["Body"].read() == b, k
            assert got["ETag"] == etags[k]
            assert got["ETag"].strip('"') == hashlib.md5(b).hexdigest()
    l1 = [o["Key"] for o in g1.list_objects_v2(Bucket="two-gw")["Contents"]]
    l2 = [o["Key"] for o in g2.list_objects_v2(Bucket="two-gw")["Contents"]]
    assert l1 == l2 == sorted(bodies)
    # A range read through the gateway that did not write it.
    r = g2.get_object(Bucket="two-gw", Key="k/005", Range="bytes=100000-100099")
    assert r["Body"].read() == bodies["k/005"][100000:100100]

    g2.delete_object(Bucket="two-gw", Key="k/000")
    with pytest.raises(ClientError) as e:
        g1.head_object(Bucket="two-gw", Key="k/000")
    assert e.value.response["Error"]["Code"] in ("404", "NoSuchKey")


def test_multipart_upload_spread_over_both_gateways(cluster):
    g1, g2 = _client(cluster, 0), _client(cluster, 1)
    g1.create_bucket(Bucket="two-gw-mpu")
    up = g1.create_multipart_upload(Bucket="two-gw-mpu", Key="big")["UploadId"]
    parts = [os.urandom(5 * 1024 * 1024), os.urandom(1234)]
    done = []
    for n, (p, c) in enumerate(zip(parts, (g2, g1)), start=1):
        done.append({"PartNumber": n, "ETag": c.upload_part(
            Bucket="two-gw-mpu", Key="big", UploadId=up, PartNumber=n, Body=p)["ETag"]})
    listed = g1.list_parts(Bucket="two-gw-mpu", Key="big", UploadId=up)["Parts"]
    assert [p["PartNumber"] for p in listed] == [1, 2]
    g2.complete_multipart_upload(Bucket="two-gw-mpu", Key="big", UploadId=up,
                                 MultipartUpload={"Parts": done})
    assert g1.get_object(Bucket="two-gw-mpu", Key="big")["Body"].read() == b"".join(parts)


def test_conditional_writes_race_through_two_gateways_exactly_one_wins(cluster):
    g1, g2 = _client(cluster, 0), _client(cluster, 1)
    g1.create_bucket(Bucket="two-gw-race")

    def attempt(i: int, key: str):
        c = (g1, g2)[i % 2]
        try:
            c.put_object(Bucket="two-gw-race", Key=key, Body=f"writer {i}".encode(),
                         IfNoneMatch="*")
            return i
        except ClientError as e:
            code = e.response["Error"]["Code"]
            assert code in ("PreconditionFailed", "ConditionalRequestConflict"), code
            return None

    for round_ in range(5):
        key = f"race-{round_}"
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda i: attempt(i, key), range(8)))
        winners = [r for r in results if r is not None]
        assert len(winners) == 1, (key, results)
        body = g2.get_object(Bucket="two-gw-race", Key=key)["Body"].read()
        assert body == f"writer {winners[0]}".encode()


def test_versions_destroyed_through_either_gateway_are_gone_for_both(cluster):
    g1, g2 = _client(cluster, 0), _client(cluster, 1)
    g1.create_bucket(Bucket="two-gw-ver")
    g1.put_bucket_versioning(Bucket="two-gw-ver", VersioningConfiguration={"Status": "Enabled"})
    v1 = g1.put_object(Bucket="two-gw-ver", Key="doc", Body=b"first")["VersionId"]
    v2 = g2.put_object(Bucket="two-gw-ver", Key="doc", Body=b"second")["VersionId"]
    assert g2.get_object(Bucket="two-gw-ver", Key="doc", VersionId=v1)["Body"].read() == b"first"
    g2.delete_object(Bucket="two-gw-ver", Key="doc", VersionId=v1)
    with pytest.raises(ClientError) as e:
        g1.get_object(Bucket="two-gw-ver", Key="doc", VersionId=v1)
    assert e.value.response["Error"]["Code"] in ("NoSuchVersion", "NoSuchKey")
    assert g1.get_object(Bucket="two-gw-ver", Key="doc")["Body"].read() == b"second"
    assert g1.get_object(Bucket="two-gw-ver", Key="doc")["VersionId"] == v2


def test_one_destruction_log_for_every_gateway(cluster, tmp_path):
    """Destructions are recorded in the cluster's one log, on the key-service node, whichever
    gateway led the GC: an export through either gateway holds every record and verifies
    offline with that log's public key; no gateway keeps a log of its own."""
    g1, g2 = _client(cluster, 0), _client(cluster, 1)
    g1.create_bucket(Bucket="one-log")
    g1.put_object(Bucket="one-log", Key="via-g1", Body=b"1" * 100)
    g2.put_object(Bucket="one-log", Key="via-g2", Body=b"2" * 200)
    g1.delete_object(Bucket="one-log", Key="via-g1")
    g2.delete_object(Bucket="one-log", Key="via-g2")
    deadline = time.monotonic() + 60
    keys: set[str] = set()
    while time.monotonic() < deadline and keys != {"via-g1", "via-g2"}:
        time.sleep(0.5)
        keys = set()
        for k in ("via-g1", "via-g2"):
            r = _admin(cluster, 1, "--json", "destruction", "show", "one-log", k)
            if r.returncode == 0 and json.loads(r.stdout):
                keys.add(k)
    assert keys == {"via-g1", "via-g2"}, "destruction records did not appear within 60 s"
    node_dir = Path(cluster["dir"]) / "nodes" / "n1"
    pem = subprocess.run([str(harness.strata_binary()), "admin", "destruction", "public-key",
                          "--data-dir", str(node_dir)], capture_output=True, text=True,
                         timeout=30, stdin=subprocess.DEVNULL)
    assert pem.returncode == 0, pem.stderr
    pub = tmp_path / "log.pub.pem"
    pub.write_text(pem.stdout)
    for i in (0, 1):
        out = tmp_path / f"export-g{i}"
        r = _admin(cluster, i, "--json", "destruction", "export", str(out), "--bucket", "one-log")
        assert r.returncode == 0, r.stdout + r.stderr
        recs = [json.loads(line)["record"] for line in (out / "records.jsonl").read_text().splitlines()]
        assert sorted(rec["key"] for rec in recs) == ["via-g1", "via-g2"]
        ok = subprocess.run([str(harness.strata_binary()), "admin", "destruction", "verify", str(out),
                             "--public-key", str(pub)], capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL)
        assert ok.returncode == 0 and ok.stdout.startswith("OK: "), ok.stdout + ok.stderr
    for gw in (Path(cluster["dir"]) / "gateways").glob("g*"):
        if gw.is_dir():
            assert not (gw / "destruction-log").exists(), f"{gw} keeps a destruction log of its own"


def test_failed_signatures_are_limited_cluster_wide(cluster):
    """The failed-signature lockout counts for the cluster: failures spread over both gateways
    lock the (source, key) pair at the one-gateway limit (20), and both gateways then refuse the
    guesser's correct signature. A gateway counting alone would let 2 x 20 through."""
    from test_hostile import botocore_signed, code_of, send

    user = json.loads(_admin(cluster, 0, "--json", "user", "add", "lockout-victim").stdout)
    ak, sk = user["access_key"], user["secret_key"]
    urls = cluster["STRATA_GATEWAYS"].split(",")

    class _Gw:
        def __init__(self, url):
            self.endpoint = url

    def attempt(i: int, secret: str):
        gw = _Gw(urls[i])
        h = botocore_signed("GET", f"{gw.endpoint}/", ak, secret)
        status, _, body = send(gw, "GET", "/", h, source="127.0.0.5")
        return status, (code_of(body) if status != 200 else None)

    for n in range(10):
        assert attempt(0, f"wrong-{n}") == (403, "SignatureDoesNotMatch"), n
    time.sleep(3)  # published by the first gateway, read by the second (every second each)
    for n in range(9):
        assert attempt(1, f"wrong-b{n}") == (403, "SignatureDoesNotMatch"), n
    # the 20th failure of the pair, cluster-wide: locked
    assert attempt(1, "wrong-last") == (503, "SlowDown")
    assert attempt(1, sk) == (503, "SlowDown"), "the guesser's correct signature is refused"
    deadline = time.monotonic() + 5
    while attempt(0, sk) != (503, "SlowDown"):
        assert time.monotonic() < deadline, "the first gateway did not honour the lockout"
        time.sleep(0.25)
    # the victim from another address is not refused, through either gateway
    for i in (0, 1):
        h = botocore_signed("GET", f"{urls[i]}/", ak, sk)
        assert send(_Gw(urls[i]), "GET", "/", h, source="127.0.0.1")[0] == 200


def test_master_key_rotation_is_refused_with_a_shared_key_service(cluster):
    r = _admin(cluster, 0, "key", "rotate-master", "--no-wait")
    assert r.returncode != 0
    assert "key service" in (r.stdout + r.stderr)


class _Endpoint:
    """What conftest.Clients needs of a server: one gateway's URL and the admin keys."""

    def __init__(self, cluster, i: int):
        self.endpoint = cluster["STRATA_GATEWAYS"].split(",")[i]
        self.access_key = cluster["STRATA_ACCESS_KEY"]
        self.secret_key = cluster["STRATA_SECRET_KEY"]


def test_rclone_and_aws_cli_through_both_gateways(cluster, tmp_path):
    c1 = Clients(_Endpoint(cluster, 0), tmp_path / "home1")
    c2 = Clients(_Endpoint(cluster, 1), tmp_path / "home2")
    src = tmp_path / "src"
    files = {f"d{i % 4}/f {i}.bin": os.urandom(200 + 3000 * i) for i in range(40)}
    for name, data in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    c1.rclone("mkdir", "strata:two-gw-rclone")
    c1.rclone("sync", str(src), "strata:two-gw-rclone/tree")
    # Checked, byte for byte, through the gateway that did not write it.
    c2.rclone("check", str(src), "strata:two-gw-rclone/tree", "--download")

    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(12 * 1024 * 1024))  # multipart with the CLI's 8 MiB parts
    c2.aws("s3", "cp", str(big), "s3://two-gw-rclone/big.bin")
    back = tmp_path / "back.bin"
    c1.aws("s3", "cp", "s3://two-gw-rclone/big.bin", str(back))
    assert back.read_bytes() == big.read_bytes()


def test_one_etcd_member_killed_both_gateways_keep_serving(cluster):
    g1, g2 = _client(cluster, 0), _client(cluster, 1)
    g1.create_bucket(Bucket="two-gw-etcd")
    g1.put_object(Bucket="two-gw-etcd", Key="before", Body=b"1")
    victim = int(cluster["STRATA_ETCD_PIDS"].split()[-1])
    os.kill(victim, 9)
    for i in range(10):
        (g1, g2)[i % 2].put_object(Bucket="two-gw-etcd", Key=f"after-{i}", Body=b"x" * i)
    for c in (g1, g2):
        assert c.get_object(Bucket="two-gw-etcd", Key="before")["Body"].read() == b"1"
        keys = [o["Key"] for o in c.list_objects_v2(Bucket="two-gw-etcd")["Contents"]]
        assert keys == sorted(["before"] + [f"after-{i}" for i in range(10)])


def test_killed_gateway_the_other_keeps_serving_and_takes_the_lead(cluster):
    """Runs last: the first gateway stays dead (after the etcd member killed above)."""
    g1, g2 = _client(cluster, 0), _client(cluster, 1)
    g1.create_bucket(Bucket="two-gw-kill")
    g1.put_object(Bucket="two-gw-kill", Key="before", Body=b"kept")
    first_pid = int(cluster["STRATA_GATEWAY_PIDS"].split()[0])
    os.kill(first_pid, 9)
    assert g2.get_object(Bucket="two-gw-kill", Key="before")["Body"].read() == b"kept"
    g2.put_object(Bucket="two-gw-kill", Key="after", Body=b"new")
    assert g2.get_object(Bucket="two-gw-kill", Key="after")["Body"].read() == b"new"
    # The survivor leads the singleton work within the lease TTL (10 s by default).
    deadline = time.monotonic() + 25
    while True:
        r = _admin(cluster, 1, "worker", "list")
        assert r.returncode == 0, r.stderr
        workers = {w["name"]: w for w in json.loads(r.stdout)}
        if workers["leader-election"]["status"]["leader"] is True:
            break
        assert time.monotonic() < deadline, workers["leader-election"]
        time.sleep(0.5)
