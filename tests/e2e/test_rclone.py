"""rclone: sync a tree of 1,000 files (unicode, spaces, deep paths), then `rclone check` (issue 4)."""

from __future__ import annotations

import random
from pathlib import Path

from conftest import unique_bucket

N_FILES = 1000


def make_tree(root: Path, n: int = N_FILES) -> dict[str, bytes]:
    rng = random.Random(1000)
    names = ["plain", "with space", "ünïcødé", "日本語", "emoji 😀", "dash-and_underscore", "a.b.c",
             "Ελληνικά", "semi;colon", "paren (1)"]
    files: dict[str, bytes] = {}
    for i in range(n):
        depth = rng.randrange(0, 8)
        parts = [f"{rng.choice(names)} {rng.randrange(5)}" for _ in range(depth)]
        rel = "/".join(parts + [f"f{i:04d} {rng.choice(names)}.dat"])
        size = rng.choice([0, 1, 17, 512, 4096, 65_537, 300_000])
        files[rel] = rng.randbytes(size)
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return files


def test_rclone_sync_and_check(clients, s3, tmp_path):
    src = tmp_path / "src"
    files = make_tree(src)
    assert len(files) == N_FILES
    bucket = unique_bucket("rclone")
    clients.rclone("mkdir", f"strata:{bucket}")
    try:
        common = ["--transfers", "4", "--checkers", "8", "--retries", "1", "--low-level-retries", "2"]
        clients.rclone("sync", str(src), f"strata:{bucket}/tree", *common)
        clients.rclone("check", str(src), f"strata:{bucket}/tree", "--download", *common)
        listed = clients.rclone("lsf", "-R", "--files-only", f"strata:{bucket}/tree").stdout.decode()
        assert sorted(listed.splitlines()) == sorted(files)
        # the objects really are there for any S3 client, byte-exact
        for rel in sorted(files)[:25]:
            got = s3.get_object(Bucket=bucket, Key=f"tree/{rel}")["Body"].read()
            assert got == files[rel], rel
        # change, add and delete locally: a second sync converges and check passes again
        victims = sorted(files)[:10]
        for rel in victims[:5]:
            (src / rel).unlink()
        for rel in victims[5:]:
            (src / rel).write_bytes(b"changed " + rel.encode())
        (src / "new dir ✓" / "new file.txt").parent.mkdir()
        (src / "new dir ✓" / "new file.txt").write_bytes(b"new")
        clients.rclone("sync", str(src), f"strata:{bucket}/tree", *common)
        clients.rclone("check", str(src), f"strata:{bucket}/tree", "--download", *common)
        back = tmp_path / "back"
        clients.rclone("copy", f"strata:{bucket}/tree", str(back), *common)
        clients.rclone("check", str(src), str(back))
    finally:
        clients.rclone("purge", f"strata:{bucket}", check=False)
