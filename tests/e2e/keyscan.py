"""What an attacker holding the data directory (and the test's own master key) can unwrap.

An independent reader of the formats in docs/keys.md (key store slots) and docs/on-disk-format.md
(shard files), with the `cryptography` package's AES-GCM: it never calls Strata code, so a test
built on it checks what is really on disk.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

HEADER = 4096
SLOT = 128
PURPOSE_KEK = b"strata/v1/kek\0"
PURPOSE_DEK = b"strata/v1/dek\0"


def slots(store_file: Path) -> list[dict]:
    """Every live slot of a key store file: kind, ids (hex), wrapped bytes."""
    raw = Path(store_file).read_bytes()
    out = []
    for n, off in enumerate(range(HEADER, len(raw) - SLOT + 1, SLOT)):
        b = raw[off:off + SLOT]
        if b[0] != 1:
            continue
        wlen = b[2]
        out.append({
            "slot": n,
            "kind": {1: "kek", 2: "dek"}.get(b[1], "?"),
            "id": b[8:24].hex(),
            "wrapper": b[24:40].hex(),
            "wrapped": bytes(b[56:56 + wlen]),
        })
    return out


def unwrap(key: bytes, purpose: bytes, aad: bytes, sealed: bytes) -> bytes | None:
    """`version 1 || nonce 12 || ciphertext || tag`, AAD = purpose label + caller AAD."""
    if len(sealed) < 29 or sealed[0] != 1:
        return None
    try:
        return AESGCM(key).decrypt(sealed[1:13], sealed[13:], purpose + aad)
    except InvalidTag:
        return None


def live_keys(data_dir: Path, masters: list[bytes]) -> tuple[dict, dict]:
    """(KEKs, DEKs) by id (hex) -> raw key, for everything the given master keys unlock."""
    entries = slots(Path(data_dir) / "keys" / "slots")
    keks, deks = {}, {}
    for e in entries:
        if e["kind"] != "kek":
            continue
        for m in masters:
            k = unwrap(m, PURPOSE_KEK, f"strata/kek/v2/{e['id']}".encode(), e["wrapped"])
            if k is not None:
                keks[e["id"]] = k
    for e in entries:
        if e["kind"] != "dek" or e["wrapper"] not in keks:
            continue
        k = unwrap(keks[e["wrapper"]], PURPOSE_DEK,
                   f"strata/dek/v1/{e['wrapper']}/{e['id']}".encode(), e["wrapped"])
        if k is not None:
            deks[e["id"]] = k
    return keks, deks


def shard_files(data_dir: Path) -> dict[str, Path]:
    """Shard file name -> path, over every disk."""
    return {p.name: p for p in (Path(data_dir) / "disks").rglob("*")
            if p.is_file() and "shards" in p.parts}


def chunk_ciphertext(files: dict[str, bytes], blob: str, index: int) -> tuple[bytes, bytes, bytes] | None:
    """(nonce, ciphertext+tag, AAD) of chunk `index` of `blob` from saved shard file contents."""
    data = {}
    k = None
    header = None
    for name, raw in files.items():
        parts = name.split(".")
        if len(parts) != 3 or parts[0] != blob or int(parts[1]) != index:
            continue
        shard = int(parts[2])
        header = raw[:128]
        k = header[33]
        data[shard] = raw[128:]
    if header is None or any(i not in data for i in range(k)):
        return None
    ct_len = int.from_bytes(header[64:72], "little")
    body = b"".join(data[i] for i in range(k))[:ct_len]
    aad = bytes.fromhex(blob) + index.to_bytes(4, "little")
    return header[40:52], body, aad


# An inlined object's bytes in a version record (docs/metadata-format.md, `DataLayout.inline`):
# the MessagePack map {"blob": bin(16), "sealed": bin} with sealed = 1 || nonce(12) || ct || tag.
_INLINE_RE = re.compile(rb"\x82\xa4blob\xc4\x10(.{16})\xa6sealed(?:\xc4(.)|\xc5(..)|\xc6(....))",
                        re.DOTALL)


def inline_bodies(roots: list[Path]) -> list[tuple[bytes, bytes, bytes]]:
    """(nonce, ciphertext+tag, AAD) of every inlined body found raw in the files under the roots
    (the RocksDB WAL and uncompressed SST blocks keep old records until compaction)."""
    out = []
    for root in roots:
        for dirpath, _, names in os.walk(root):
            for n in names:
                try:
                    raw = (Path(dirpath) / n).read_bytes()
                except OSError:
                    continue
                for m in _INLINE_RE.finditer(raw):
                    blob = m.group(1)
                    size = int.from_bytes(next(g for g in m.groups()[1:] if g is not None), "big")
                    sealed = raw[m.end():m.end() + size]
                    if len(sealed) == size and size >= 29 and sealed[0] == 1:
                        out.append((sealed[1:13], sealed[13:], b"strata/v1/inline" + blob))
    return out


def decrypts(key: bytes, nonce: bytes, body: bytes, aad: bytes) -> bytes | None:
    try:
        return AESGCM(key).decrypt(nonce, body, aad)
    except InvalidTag:
        return None


def find_everywhere(roots: list[Path], needles: dict[str, bytes]) -> list[str]:
    """Every (file, needle name) where a needle's bytes occur, over every file under the roots."""
    hits = []
    for root in roots:
        for dirpath, _, names in os.walk(root):
            for n in names:
                p = Path(dirpath) / n
                try:
                    raw = p.read_bytes()
                except OSError:
                    continue
                for label, needle in needles.items():
                    if needle and needle in raw:
                        hits.append(f"{p}: {label}")
    return hits
