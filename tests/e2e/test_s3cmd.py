"""s3cmd: put, get, ls, del, sync (issue 4)."""

from __future__ import annotations


from conftest import det_bytes, unique_bucket


def test_s3cmd_put_get_ls_del_sync(clients, tmp_path):
    bucket = unique_bucket("s3cmd")
    clients.s3cmd("mb", f"s3://{bucket}")
    try:
        f = tmp_path / "one file.bin"
        data = det_bytes("s3cmd", 200_000)
        f.write_bytes(data)
        clients.s3cmd("put", str(f), f"s3://{bucket}/dir/one file.bin")
        ls = clients.s3cmd("ls", f"s3://{bucket}/dir/").stdout.decode()
        assert f"s3://{bucket}/dir/one file.bin" in ls and "200000" in ls
        out = tmp_path / "got.bin"
        clients.s3cmd("get", f"s3://{bucket}/dir/one file.bin", str(out))
        assert out.read_bytes() == data
        # sync a small tree up, then back down to a new directory
        src = tmp_path / "tree"
        tree = {"a.txt": b"a", "sub/b.txt": b"bb", "sub/deeper/ü.txt": "ü".encode(), "big.bin": det_bytes("big", 3 << 20)}
        for rel, content in tree.items():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_bytes(content)
        clients.s3cmd("sync", f"{src}/", f"s3://{bucket}/tree/")
        listed = clients.s3cmd("ls", "--recursive", f"s3://{bucket}/tree/").stdout.decode()
        for rel in tree:
            assert f"s3://{bucket}/tree/{rel}" in listed, rel
        back = tmp_path / "back"
        back.mkdir()
        clients.s3cmd("sync", f"s3://{bucket}/tree/", f"{back}/")
        for rel, content in tree.items():
            assert (back / rel).read_bytes() == content, rel
        clients.s3cmd("del", f"s3://{bucket}/dir/one file.bin")
        r = clients.s3cmd("get", f"s3://{bucket}/dir/one file.bin", str(tmp_path / "gone"), check=False)
        assert r.returncode != 0
        clients.s3cmd("del", "--recursive", "--force", f"s3://{bucket}/tree/")
        assert clients.s3cmd("ls", "--recursive", f"s3://{bucket}").stdout.strip() == b""
    finally:
        clients.s3cmd("rb", "--recursive", "--force", f"s3://{bucket}", check=False)
