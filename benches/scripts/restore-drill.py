#!/usr/bin/env python3
"""Timed restore drill (docs/operations.md "Backup and restore"): the operator's rules ask for
recovery within one hour. On 127.0.0.1 it starts `strata serve`, writes OBJECTS objects of SIZE
bytes with boto3 (16 threads), takes an online backup with `strata admin backup`, writes more
objects (which the restore must not bring back: they are after the backup), kill -9s the server,
deletes the metadata directory (the disaster: the metadata disk is lost), and then times the
recovery: `strata admin restore`, the start until ready, and a check that every object of the
backup lists and that a sample of them reads back byte-exact (MD5 = ETag). Prints each step's
seconds and the total as JSON.

    .venv/bin/python benches/scripts/restore-drill.py STRATA_BIN [OBJECTS] [SIZE]

Defaults: 5000 objects of 16 KiB. Loopback only; everything under a temporary directory.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import boto3
from botocore.config import Config

AK, SK = "DRILLACCESSKEY000001", "drill-secret-key-00000000000000000000001"


def port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start(binary: str, data: str, listen: str, log) -> subprocess.Popen:
    env = dict(os.environ, STRATA_ADMIN_ACCESS_KEY=AK, STRATA_ADMIN_SECRET_KEY=SK)
    p = subprocess.Popen([binary, "serve", "--data-dir", data, "--listen", listen],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, env=env)
    deadline = time.monotonic() + 300
    for raw in iter(p.stdout.readline, b""):
        if b"ready on" in raw:
            return p
        if time.monotonic() > deadline:
            break
    p.kill()
    raise SystemExit(f"server did not start; see {log.name}")


def admin(binary: str, endpoint: str, *args: str) -> str:
    r = subprocess.run([binary, "admin", "--endpoint", endpoint, "--access-key", AK,
                        "--secret-key", SK, *args], capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise SystemExit(f"strata admin {' '.join(args)} failed: {r.stdout}{r.stderr}")
    return r.stdout


def main() -> None:
    binary = os.path.abspath(sys.argv[1])
    objects = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
    size = int(sys.argv[3]) if len(sys.argv) > 3 else 16 * 1024
    work = tempfile.mkdtemp(prefix="strata-drill-")
    data, backup = os.path.join(work, "data"), os.path.join(work, "backup")
    listen = f"127.0.0.1:{port()}"
    endpoint = f"http://{listen}"
    log = open(os.path.join(work, "server.log"), "ab")
    srv = start(binary, data, listen, log)
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=AK,
                          aws_secret_access_key=SK, region_name="us-east-1",
                          config=Config(max_pool_connections=16, retries={"max_attempts": 2}))
        s3.create_bucket(Bucket="drill")
        body = lambda i: hashlib.sha256(str(i).encode()).digest() * (size // 32 + 1)  # noqa: E731

        def put(i: int) -> None:
            s3.put_object(Bucket="drill", Key=f"obj/{i:08d}", Body=body(i)[:size])

        t0 = time.monotonic()
        with cf.ThreadPoolExecutor(16) as ex:
            list(ex.map(put, range(objects)))
        fill = time.monotonic() - t0

        t0 = time.monotonic()
        admin(binary, endpoint, "backup", backup)
        backup_s = time.monotonic() - t0
        backup_mib = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(backup)
                         for f in fs) / 2**20
        # Written after the backup: the restore must not show them.
        for i in range(objects, objects + 10):
            put(i)

        srv.send_signal(signal.SIGKILL)
        srv.wait()
        shutil.rmtree(os.path.join(data, "meta"))

        t_start = time.monotonic()
        admin(binary, endpoint, "restore", backup, "--data-dir", data)
        restore_s = time.monotonic() - t_start
        t0 = time.monotonic()
        srv = start(binary, data, listen, log)
        start_s = time.monotonic() - t0
        t0 = time.monotonic()
        keys = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket="drill"):
            keys += [o["Key"] for o in page.get("Contents", [])]
        assert keys == [f"obj/{i:08d}" for i in range(objects)], "listing differs from the backup"
        step = max(1, objects // 500)

        def check(i: int) -> None:
            got = s3.get_object(Bucket="drill", Key=f"obj/{i:08d}")["Body"].read()
            assert got == body(i)[:size], f"object {i} differs"

        with cf.ThreadPoolExecutor(16) as ex:
            list(ex.map(check, range(0, objects, step)))
        verify_s = time.monotonic() - t0
        total = time.monotonic() - t_start
        print(json.dumps({
            "objects": objects, "size": size, "fill_s": round(fill, 1),
            "backup_s": round(backup_s, 2), "backup_mib": round(backup_mib, 1),
            "restore_s": round(restore_s, 2), "start_s": round(start_s, 2),
            "verify_s": round(verify_s, 2), "objects_read_back": len(range(0, objects, step)),
            "recovery_total_s": round(total, 2),
        }))
    finally:
        srv.kill()
        srv.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
