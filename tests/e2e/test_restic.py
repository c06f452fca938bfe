"""restic: init, back up ~200 MiB of mixed files, check --read-data, restore, byte-compare (issue 4)."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from conftest import unique_bucket

MiB = 1 << 20


def make_dataset(root: Path) -> dict[str, str]:
    """~200 MiB, deterministic: 6 large files (25 MiB) and 2,000 small ones (0-50 KiB)."""
    rng = random.Random(200)
    digests: dict[str, str] = {}
    for i in range(6):
        p = root / "large" / f"blob-{i}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        with open(p, "wb") as f:
            for _ in range(25):
                block = rng.randbytes(MiB)
                f.write(block)
                h.update(block)
        digests[p.relative_to(root).as_posix()] = h.hexdigest()
    for i in range(2000):
        p = root / "small" / f"d{i % 37:02d}" / f"file {i:04d}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        data = rng.randbytes(rng.randrange(0, 50 * 1024))
        p.write_bytes(data)
        digests[p.relative_to(root).as_posix()] = hashlib.sha256(data).hexdigest()
    return digests


def tree_digests(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h = hashlib.sha256()
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(MiB), b""):
                    h.update(block)
            out[p.relative_to(root).as_posix()] = h.hexdigest()
    return out


@pytest.mark.slow
def test_restic_backup_check_restore(clients, s3, tmp_path):
    src = tmp_path / "src"
    expected = make_dataset(src)
    total = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    assert 180 * MiB < total < 220 * MiB
    bucket = unique_bucket("restic")
    s3.create_bucket(Bucket=bucket)
    repo = f"{bucket}/repo"
    clients.restic(repo, "init")
    clients.restic(repo, "backup", "--host", "e2e", str(src), timeout=1200)
    snaps = clients.restic(repo, "snapshots", "--json").stdout
    assert snaps.count(b'"id"') >= 1
    clients.restic(repo, "check", "--read-data", timeout=1200)
    out = tmp_path / "restore"
    clients.restic(repo, "restore", "latest", "--target", str(out), timeout=1200)
    restored_root = out / src.relative_to("/")
    assert tree_digests(restored_root) == expected
    # a second, incremental backup after a change is also consistent
    (src / "small" / "d00" / "file 0000.txt").write_bytes(b"changed")
    clients.restic(repo, "backup", "--host", "e2e", str(src), timeout=1200)
    clients.restic(repo, "check", timeout=600)
    # the repository objects are real S3 objects
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="repo/")["Contents"]]
    assert "repo/config" in keys and any(k.startswith("repo/data/") for k in keys)
