"""AWS CLI (`aws s3` and `aws s3api`) against the real server (issue 4)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from conftest import det_bytes, unique_bucket
from s3util import md5_etag

MiB = 1 << 20


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MiB), b""):
            h.update(block)
    return h.hexdigest()


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def cli_bucket(clients):
    name = unique_bucket("cli")
    clients.aws("s3", "mb", f"s3://{name}")
    yield name
    clients.aws("s3", "rb", f"s3://{name}", "--force", check=False)


@pytest.mark.slow
def test_cp_100mib_multipart(clients, cli_bucket, big_file, tmp_path):
    clients.aws("s3", "cp", str(big_file), f"s3://{cli_bucket}/big.bin")
    head = json.loads(clients.aws("s3api", "head-object", "--bucket", cli_bucket, "--key", "big.bin").stdout)
    assert head["ContentLength"] == 100 * MiB
    # the CLI switches to multipart above 8 MiB with 8 MiB parts: 13 parts
    assert head["ETag"].strip('"').endswith("-13"), head["ETag"]
    out = tmp_path / "back.bin"
    clients.aws("s3", "cp", f"s3://{cli_bucket}/big.bin", str(out))
    assert out.stat().st_size == 100 * MiB
    assert _md5(out) == _md5(big_file)


def test_sync_ls_rm(clients, cli_bucket, tmp_path):
    src = tmp_path / "src"
    files = {"a.txt": b"alpha", "dir/b.bin": det_bytes("b", 70_000), "dir/sub/c d.txt": b"with space",
             "ü/n.txt": b"unicode dir", "empty": b""}
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    out = clients.aws("s3", "sync", str(src), f"s3://{cli_bucket}/tree").stdout.decode()
    assert out.count("upload:") == len(files)
    # a second sync uploads nothing
    assert "upload:" not in clients.aws("s3", "sync", str(src), f"s3://{cli_bucket}/tree").stdout.decode()
    ls = clients.aws("s3", "ls", "--recursive", f"s3://{cli_bucket}/tree/").stdout.decode()
    listed = sorted(line.split(None, 3)[3] for line in ls.splitlines() if line.strip())
    assert listed == sorted(f"tree/{k}" for k in files)
    top = clients.aws("s3", "ls", f"s3://{cli_bucket}/tree/").stdout.decode()
    assert "PRE dir/" in top and "PRE ü/" in top and "a.txt" in top
    # change one file, delete one: sync --delete mirrors both
    (src / "a.txt").write_bytes(b"alpha v2")
    (src / "dir/b.bin").unlink()
    clients.aws("s3", "sync", "--delete", str(src), f"s3://{cli_bucket}/tree")
    back = tmp_path / "back"
    clients.aws("s3", "sync", f"s3://{cli_bucket}/tree", str(back))
    assert _tree(back) == _tree(src)
    clients.aws("s3", "rm", "--recursive", f"s3://{cli_bucket}/tree")
    assert clients.aws("s3", "ls", "--recursive", f"s3://{cli_bucket}/").stdout.strip() == b""
    buckets = clients.aws("s3", "ls").stdout.decode()
    assert cli_bucket in buckets


def test_s3api_calls(clients, cli_bucket, tmp_path):
    body = tmp_path / "body"
    body.write_bytes(b"s3api body")
    put = json.loads(clients.aws("s3api", "put-object", "--bucket", cli_bucket, "--key", "k",
                                 "--body", str(body), "--metadata", "owner=e2e",
                                 "--content-type", "text/plain", "--tagging", "t=1").stdout)
    assert put["ETag"] == md5_etag(b"s3api body")
    head = json.loads(clients.aws("s3api", "head-object", "--bucket", cli_bucket, "--key", "k").stdout)
    assert head["Metadata"] == {"owner": "e2e"} and head["ContentType"] == "text/plain"
    out = tmp_path / "out"
    got = json.loads(clients.aws("s3api", "get-object", "--bucket", cli_bucket, "--key", "k",
                                 "--range", "bytes=0-4", str(out)).stdout)
    assert out.read_bytes() == b"s3api" and got["ContentRange"] == "bytes 0-4/10"
    tags = json.loads(clients.aws("s3api", "get-object-tagging", "--bucket", cli_bucket, "--key", "k").stdout)
    assert tags["TagSet"] == [{"Key": "t", "Value": "1"}]
    clients.aws("s3api", "copy-object", "--bucket", cli_bucket, "--key", "k2",
                "--copy-source", f"{cli_bucket}/k")
    lst = json.loads(clients.aws("s3api", "list-objects-v2", "--bucket", cli_bucket).stdout)
    assert [o["Key"] for o in lst["Contents"]] == ["k", "k2"]
    # errors surface with the S3 code
    r = clients.aws("s3api", "get-object", "--bucket", cli_bucket, "--key", "missing", str(out), check=False)
    assert r.returncode != 0 and b"NoSuchKey" in r.stderr
    r = clients.aws("s3api", "head-bucket", "--bucket", unique_bucket("nope"), check=False)
    assert r.returncode != 0 and b"404" in r.stderr
    r = clients.aws("s3api", "delete-bucket", "--bucket", cli_bucket, check=False)
    assert r.returncode != 0 and b"BucketNotEmpty" in r.stderr
    # multipart through s3api
    up = json.loads(clients.aws("s3api", "create-multipart-upload", "--bucket", cli_bucket, "--key", "mp").stdout)
    part = tmp_path / "part"
    part.write_bytes(det_bytes("clipart", 6 * MiB))
    p1 = json.loads(clients.aws("s3api", "upload-part", "--bucket", cli_bucket, "--key", "mp", "--part-number", "1",
                                "--upload-id", up["UploadId"], "--body", str(part)).stdout)
    parts = json.loads(clients.aws("s3api", "list-parts", "--bucket", cli_bucket, "--key", "mp",
                                   "--upload-id", up["UploadId"]).stdout)
    assert [p["PartNumber"] for p in parts["Parts"]] == [1]
    mpu = tmp_path / "mpu.json"
    mpu.write_text(json.dumps({"Parts": [{"PartNumber": 1, "ETag": p1["ETag"]}]}))
    done = json.loads(clients.aws("s3api", "complete-multipart-upload", "--bucket", cli_bucket, "--key", "mp",
                                  "--upload-id", up["UploadId"], "--multipart-upload", f"file://{mpu}").stdout)
    assert done["ETag"] == '"' + hashlib.md5(hashlib.md5(part.read_bytes()).digest()).hexdigest() + '-1"'
    clients.aws("s3api", "delete-objects", "--bucket", cli_bucket, "--delete",
                json.dumps({"Objects": [{"Key": "k"}, {"Key": "k2"}, {"Key": "mp"}]}))
    lst = json.loads(clients.aws("s3api", "list-objects-v2", "--bucket", cli_bucket).stdout or "{}")
    assert lst.get("Contents", []) == []
