"""Fixtures for the end-to-end suite. See docs/testing.md."""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

import harness
from harness import IS_MOTO, REGION, TARGET, Server, run, scrubbed_environ, venv_bin

_ACTIVE: list[Server] = []

# boto3 runs inside this process: isolate it from the machine's AWS configuration right away.
_clean = scrubbed_environ()
os.environ.clear()
os.environ.update(_clean)
_ISOLATION = Path(tempfile.mkdtemp(prefix="strata-e2e-home-"))
(_ISOLATION / "aws_config").write_text("")
(_ISOLATION / "aws_credentials").write_text("")
os.environ["AWS_CONFIG_FILE"] = str(_ISOLATION / "aws_config")
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(_ISOLATION / "aws_credentials")
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "strata_only(reason): S3 behaviour the reference server (moto) does not implement; "
        "runs only against strata. The reason says where moto deviates from AWS.")
    config.addinivalue_line("markers", "slow: a test that moves 100+ MiB")


def disk_use(path: str) -> tuple[float, int]:
    """(used fraction as df's Use% and the stores compute it, bytes available) of `path`'s disk."""
    st = os.statvfs(path)
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    avail = st.f_bavail * st.f_frsize
    return (used / (used + avail) if used + avail else 1.0), avail


# The stores refuse writes above 95% (storage-node high_water). A run that starts near it fails
# in scattered places with InsufficientStorage; say why up front instead.
DISK_LIMIT = 0.92


def pytest_sessionstart(session):
    frac, avail = disk_use(tempfile.gettempdir())
    if frac > DISK_LIMIT:
        pytest.exit(f"the disk of {tempfile.gettempdir()} is {frac:.0%} full ({avail >> 20} MiB "
                    f"available): the stores refuse writes at 95%; free space first", returncode=3)


def pytest_report_header(config):
    frac, avail = disk_use(tempfile.gettempdir())
    return [f"strata e2e target: {TARGET}"
            + ("" if IS_MOTO else f" (binary {harness.strata_binary()}, metadata on {harness.META}"
               + (", shared server: a local cluster" if harness.CLUSTER else "") + ")"),
            f"disk of {tempfile.gettempdir()}: {frac:.0%} used, {avail >> 30} GiB available"]


def pytest_collection_modifyitems(config, items):
    # STRATA_E2E_AUDIT=1 runs strata-only tests against moto too, to confirm each stated deviation.
    if not IS_MOTO or os.environ.get("STRATA_E2E_AUDIT") == "1":
        return
    for item in items:
        m = item.get_closest_marker("strata_only")
        if m:
            reason = m.kwargs.get("reason") or (m.args[0] if m.args else "strata-only")
            item.add_marker(pytest.mark.skip(reason=f"strata-only: {reason}"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    # Against strata nothing may be skipped: a skipped check is a check that did not happen.
    if not IS_MOTO and rep.skipped and call.when in ("setup", "call"):
        rep.outcome = "failed"
        rep.longrepr = f"skipped tests are failures against strata: {rep.longrepr}"
    if rep.failed:
        for s in list(_ACTIVE):
            rep.sections.append((f"server log ({s.workdir.name})", s.log_tail()))


# ---- servers --------------------------------------------------------------------------------------
_FATAL: list[str] = []  # a missing binary fails every later test at once, without retrying


def _start(tmp: Path, name: str, region: str = REGION, extra_args: list[str] | None = None,
           command_prefix: list[str] | None = None) -> Server:
    if _FATAL:
        pytest.fail(_FATAL[0], pytrace=False)
    s = Server(tmp, name, region=region, extra_args=extra_args, command_prefix=command_prefix)
    error = None
    try:
        s.start()
    except harness.ServerError as e:
        error = str(e)
        if e.fatal:
            _FATAL.append(error)
    if error:
        pytest.fail(error, pytrace=False)
    _ACTIVE.append(s)
    return s


def _finish(s: Server) -> None:
    s.stop()
    _ACTIVE.remove(s)


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """One shared server for the whole session (tests use their own buckets); a whole local
    cluster with STRATA_E2E_CLUSTER=1."""
    if harness.CLUSTER:
        s = harness.ClusterServer(tmp_path_factory.mktemp("cluster"))
        try:
            s.start()
        except harness.ServerError as e:
            s.stop()
            pytest.fail(str(e), pytrace=False)
        _ACTIVE.append(s)
        yield s
        _finish(s)
        return
    s = _start(tmp_path_factory.mktemp("server"), "shared")
    yield s
    _finish(s)


@pytest.fixture
def make_server(tmp_path_factory):
    """Factory for dedicated servers (own data dir, optional region, optional command prefix such
    as strace); all stopped at test end."""
    made: list[Server] = []

    def factory(region: str = REGION, extra_args: list[str] | None = None,
                command_prefix: list[str] | None = None) -> Server:
        s = _start(tmp_path_factory.mktemp("fresh"), "fresh", region=region,
                   extra_args=extra_args, command_prefix=command_prefix)
        made.append(s)
        return s

    yield factory
    for s in made:
        _finish(s)


@pytest.fixture
def fresh_server(make_server):
    """A dedicated server with its own data dir, for restart and crash tests."""
    return make_server()


# ---- boto3 ----------------------------------------------------------------------------------------
def make_s3(endpoint: str, access_key: str, secret_key: str, region: str = REGION, verify=None, **cfg):
    """A boto3 S3 client; `verify`: a CA bundle path for https endpoints (or True/False)."""
    import boto3
    from botocore.config import Config

    config = Config(
        region_name=region,
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        retries={"max_attempts": 1, "mode": "standard"},
        connect_timeout=10,
        read_timeout=120,
        **cfg,
    )
    session = boto3.session.Session(aws_access_key_id=access_key, aws_secret_access_key=secret_key,
                                    region_name=region)
    return session.client("s3", endpoint_url=endpoint, config=config, verify=verify)


def spread_over_gateways(client, gateways: list[str]):
    """Sends each request of a boto3 client to the next gateway of a cluster (rewritten before it
    is signed, so the signature names the host it goes to)."""
    import itertools
    import urllib.parse

    nxt = itertools.cycle(gateways)

    def rewrite(request, **_kwargs):
        to = urllib.parse.urlsplit(next(nxt))
        parts = urllib.parse.urlsplit(request.url)
        request.url = urllib.parse.urlunsplit(parts._replace(scheme=to.scheme, netloc=to.netloc))

    client.meta.events.register("before-sign.s3", rewrite)
    return client


@pytest.fixture(scope="session")
def s3(server):
    client = make_s3(server.endpoint, server.access_key, server.secret_key)
    if isinstance(server, harness.ClusterServer):
        # Every request alternates between the gateways.
        spread_over_gateways(client, server.gateways)
    return client


def unique_bucket(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:20]}"


def empty_bucket(client, name: str) -> None:
    """Best effort: delete every version (bypassing governance) and the bucket."""
    try:
        paginator = client.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=name, PaginationConfig={"MaxItems": 20000}):
            objs = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                    for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
            for i in range(0, len(objs), 1000):
                client.delete_objects(Bucket=name, Delete={"Objects": objs[i:i + 1000], "Quiet": True},
                                      BypassGovernanceRetention=True)
        for up in client.list_multipart_uploads(Bucket=name).get("Uploads", []):
            client.abort_multipart_upload(Bucket=name, Key=up["Key"], UploadId=up["UploadId"])
        client.delete_bucket(Bucket=name)
    except Exception:
        pass  # locked (COMPLIANCE) data legitimately outlives the test; the data dir is temporary


@pytest.fixture(scope="module")
def bob(server):
    """A second user (one per test module): its client, canonical id and display name."""
    u = server.admin_json("user", "add", "bob" + uuid.uuid4().hex[:8])
    c = make_s3(server.endpoint, u["access_key"], u["secret_key"])
    owner = c.list_buckets()["Owner"]
    return c, owner["ID"], owner["DisplayName"]


def allow_public(client, name: str, ownership: str | None = "ObjectWriter") -> None:
    """Lets bucket `name` be made public, as an S3 owner must since 2023: new buckets block public
    access (all four Public Access Block settings) and disable ACLs (BucketOwnerEnforced)."""
    client.delete_public_access_block(Bucket=name)
    if ownership:
        client.put_bucket_ownership_controls(
            Bucket=name, OwnershipControls={"Rules": [{"ObjectOwnership": ownership}]})


def create_public_bucket(client, name: str, acl: str) -> None:
    """CreateBucket with a public canned ACL is refused on new buckets
    (InvalidBucketAclWithBlockPublicAccessError): create, allow public, then put the ACL."""
    client.create_bucket(Bucket=name)
    allow_public(client, name)
    client.put_bucket_acl(Bucket=name, ACL=acl)


@pytest.fixture
def bucket(s3):
    name = unique_bucket()
    s3.create_bucket(Bucket=name)
    yield name
    empty_bucket(s3, name)


# ---- external clients -----------------------------------------------------------------------------
def require_tool(name: str) -> str:
    """Path of a client; a missing client FAILS the test (never skips)."""
    path = venv_bin(name)
    if not path:
        pytest.fail(f"required client `{name}` is not installed (run scripts/setup.sh)", pytrace=False)
    return path


class Clients:
    """Explicit, isolated environments for the command-line clients."""

    def __init__(self, server: Server, home: Path, access_key: str | None = None,
                 secret_key: str | None = None):
        self.server = server
        self.home = home
        self.ak = access_key or server.access_key
        self.sk = secret_key or server.secret_key
        home.mkdir(parents=True, exist_ok=True)
        (home / ".aws").mkdir(exist_ok=True)
        aws_config = home / ".aws" / "config"
        aws_config.write_text(
            f"[default]\nregion = {REGION}\noutput = json\n"
            "s3 =\n    addressing_style = path\n")
        aws_creds = home / ".aws" / "credentials"
        aws_creds.write_text(
            f"[default]\naws_access_key_id = {self.ak}\naws_secret_access_key = {self.sk}\n")
        self.s3cmd_cfg = home / "s3cmd.cfg"
        hostport = server.endpoint.removeprefix("http://")
        self.s3cmd_cfg.write_text(
            "[default]\n"
            f"access_key = {self.ak}\nsecret_key = {self.sk}\n"
            f"host_base = {hostport}\nhost_bucket = {hostport}\n"
            f"bucket_location = {REGION}\n"
            "use_https = False\nsignature_v2 = False\ncheck_ssl_certificate = False\n"
            "proxy_host = \nproxy_port = 0\n")
        (home / "rclone.conf").write_text("")
        env = scrubbed_environ()
        venv = str(Path(venv_bin("python3") or "/usr/bin/python3").parent)
        env.update({
            "HOME": str(home),
            "PATH": venv + os.pathsep + env.get("PATH", "/usr/bin:/bin"),
            "AWS_CONFIG_FILE": str(aws_config),
            "AWS_SHARED_CREDENTIALS_FILE": str(aws_creds),
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_PAGER": "",
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "RCLONE_CONFIG": str(home / "rclone.conf"),
            "RCLONE_CONFIG_STRATA_TYPE": "s3",
            "RCLONE_CONFIG_STRATA_PROVIDER": "Other",
            "RCLONE_CONFIG_STRATA_ENV_AUTH": "false",
            "RCLONE_CONFIG_STRATA_ACCESS_KEY_ID": self.ak,
            "RCLONE_CONFIG_STRATA_SECRET_ACCESS_KEY": self.sk,
            "RCLONE_CONFIG_STRATA_ENDPOINT": server.endpoint,
            "RCLONE_CONFIG_STRATA_REGION": REGION,
            "RCLONE_CONFIG_STRATA_FORCE_PATH_STYLE": "true",
            "LC_ALL": "C.UTF-8",
            "LANG": "C.UTF-8",
            "PYTHONIOENCODING": "utf-8",
        })
        self.env = env

    def aws(self, *args: str, timeout: float = 300, check: bool = True):
        aws = require_tool("aws")
        return run([aws, "--endpoint-url", self.server.endpoint, "--region", REGION, *args],
                   self.env, timeout=timeout, check=check)

    def rclone(self, *args: str, timeout: float = 600, check: bool = True):
        return run([require_tool("rclone"), *args], self.env, timeout=timeout, check=check)

    def s3cmd(self, *args: str, timeout: float = 300, check: bool = True):
        return run([require_tool("s3cmd"), "-c", str(self.s3cmd_cfg), *args], self.env,
                   timeout=timeout, check=check)

    def restic(self, repo: str, *args: str, timeout: float = 900, check: bool = True):
        env = dict(self.env)
        env.update({
            "RESTIC_REPOSITORY": f"s3:{self.server.endpoint}/{repo}",
            "RESTIC_PASSWORD": "strata-e2e-restic-password",
            "RESTIC_CACHE_DIR": str(self.home / "restic-cache"),
            "AWS_ACCESS_KEY_ID": self.ak,
            "AWS_SECRET_ACCESS_KEY": self.sk,
            "AWS_DEFAULT_REGION": REGION,
        })
        return run([require_tool("restic"), *args], env, timeout=timeout, check=check)


@pytest.fixture
def clients(server, tmp_path):
    return Clients(server, tmp_path / "home")


# ---- deterministic data ---------------------------------------------------------------------------
def det_bytes(seed: int | str, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


@pytest.fixture(scope="session")
def big_file(tmp_path_factory):
    """100 MiB of deterministic bytes, generated once per session."""
    p = tmp_path_factory.mktemp("big") / "big-100MiB.bin"
    with open(p, "wb") as f:
        rng = random.Random(100)
        for _ in range(100):
            f.write(rng.randbytes(1 << 20))
    yield p
    shutil.rmtree(p.parent, ignore_errors=True)
