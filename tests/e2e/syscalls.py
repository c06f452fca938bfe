"""Reading an `strace -f -yy` log of the server, and checking the durability order in it.

Used by test_durability.py. The server runs under

    strace -f -tt -yy -qq -s 64 --seccomp-bpf -e signal=none -e trace=<TRACED> -o LOG strata serve ...

`-yy` prints every file descriptor with what it refers to (`13</data/disks/disk0/tmp/x>`,
`9<TCP:[127.0.0.1:PORT->127.0.0.1:CLIENT]>`), so a request is found by the socket read that returns
its request line and ended by the socket write of its final status line, and file syscalls are
attributed to it by path and by position in the log.

Order in the log is the order that matters: strace prints a syscall's return only after the kernel
returned, and the tracee stays stopped until strace has printed it. So when the code waits for call A
before making call B (in any thread), A's return line comes before B's entry line. "A before B"
below always means `A.end < B.start` in log lines.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

# ---- where things live under the data dir: the only place that knows the layout ------------------
# Paths are matched relative to the data dir. A shard is "a file under a disk's tmp/ renamed to a
# file under the same disk's shards/"; file names inside those directories are not interpreted.
SHARD_TMP_RE = re.compile(r"^(disks/[^/]+)/tmp/[^/]+$")
SHARD_FINAL_RE = re.compile(r"^(disks/[^/]+)/shards/.+$")
WAL_RE = re.compile(r"^meta/[^/]+\.log$")  # RocksDB write-ahead log files
KEYS_RE = re.compile(r"^keys/slots$")  # the key store (wrapped keys in fixed slots)


def shard_files(data_dir: str) -> list[str]:
    """Data-dir-relative paths of the files under every disk's shards/ now."""
    root = Path(data_dir)
    return sorted(str(f.relative_to(root)) for f in root.glob("disks/*/shards/**/*")
                  if f.is_file() and SHARD_FINAL_RE.match(str(f.relative_to(root))))

# Syscalls traced (a regex, so names that an architecture lacks are simply not matched).
TRACED = ("/^(open|openat|openat2|creat|read|readv|recvfrom|recvmsg|write|writev|pwrite64|pwritev|"
          "pwritev2|sendto|sendmsg|sendfile|copy_file_range|fsync|fdatasync|sync|syncfs|"
          "sync_file_range|msync|rename|renameat|renameat2|link|linkat|mkdir|mkdirat|unlink|unlinkat|"
          "io_uring_setup|accept|accept4)$")

SOCKET_READS = {"read", "readv", "recvfrom", "recvmsg"}
SOCKET_WRITES = {"write", "writev", "sendto", "sendmsg"}
FILE_WRITES = {"write", "writev", "pwrite64", "pwritev", "pwritev2", "copy_file_range", "sendfile"}
FILE_SYNCS = {"fsync", "fdatasync"}  # sync_file_range is not a durability barrier
GLOBAL_SYNCS = {"sync", "syncfs"}  # counted for every path: the test's disks share one file system
OPENS = {"open", "openat", "openat2", "creat"}
# How a durable temporary is published under shards/: a rename, or a hard link (the chunk store
# links new shards so that a put can never replace an existing file, then unlinks the temporary).
RENAMES = {"rename", "renameat", "renameat2", "link", "linkat"}
MKDIRS = {"mkdir", "mkdirat"}
HTTP_METHODS = ("GET", "PUT", "POST", "DELETE", "HEAD")


@dataclass
class Call:
    start: int   # log line of the entry
    end: int     # log line of the return (== start when not split by `<unfinished ...>`)
    tid: int
    time: str    # wall clock at entry, for messages
    name: str
    args: list[str]
    ret: str     # raw text after ") = "

    @property
    def retval(self) -> int | None:
        m = re.match(r"-?\d+", self.ret)
        return int(m.group()) if m else None

    @property
    def ok(self) -> bool:
        v = self.retval
        return v is not None and v >= 0

    def where(self) -> str:
        return f"line {self.start + 1} ({self.time}, tid {self.tid}) {self.name}"


# ---- parsing ------------------------------------------------------------------------------------
_LINE = re.compile(r"^(\d+)\s+(\d\d:\d\d:\d\d\.\d+)\s+(.*)$")
_RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>(.*)$")
_UNFINISHED = " <unfinished ...>"
_CALL = re.compile(r"^(\w+)\((.*)$")


def split_args(text: str) -> list[str]:
    """Top-level comma split of strace's argument text (quotes, brackets and fd annotations kept)."""
    out, cur, depth, angle, quoted, esc = [], [], 0, [], False, False
    for ch in text:
        if quoted:
            cur.append(ch)
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                quoted = False
            continue
        if ch == '"':
            quoted = True
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "<":
            angle.append(depth)
        elif ch == ">" and angle and angle[-1] == depth:
            angle.pop()
        elif ch == "," and depth == 0 and not angle:
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    if "".join(cur).strip():
        out.append("".join(cur).strip())
    return out


def c_unescape(s: str) -> str:
    """strace's C-style escapes (\\n, \\", \\\\, \\xNN, octal \\NNN) -> text (bytes as latin-1)."""
    out, i = bytearray(), 0
    simple = {"n": 10, "t": 9, "r": 13, "v": 11, "f": 12, "a": 7, "b": 8, "\\": 92, '"': 34, "'": 39}
    while i < len(s):
        c = s[i]
        if c != "\\" or i + 1 >= len(s):
            out += c.encode("latin-1", "replace")
            i += 1
            continue
        n = s[i + 1]
        if n in simple:
            out.append(simple[n])
            i += 2
        elif n == "x":
            out.append(int(s[i + 2:i + 4], 16))
            i += 4
        elif n.isdigit():
            j = i + 1
            while j < len(s) and j < i + 4 and s[j] in "01234567":
                j += 1
            out.append(int(s[i + 1:j], 8) & 0xFF)
            i = j
        else:
            out += n.encode("latin-1", "replace")
            i += 2
    return out.decode("latin-1")


def fd_target(arg: str) -> str | None:
    """`13</a/b>` -> '/a/b'; `9<TCP:[...]>` -> 'TCP:[...]'; a bare number or AT_FDCWD -> None."""
    m = re.match(r"^(?:-?\d+|AT_FDCWD)<(.*)>$", arg, re.S)
    return c_unescape(m.group(1)) if m else None


def string_arg(arg: str) -> str | None:
    m = re.match(r'^"((?:[^"\\]|\\.)*)"', arg, re.S)
    return c_unescape(m.group(1)) if m else None


def first_string(args: list[str]) -> str:
    """The first quoted string anywhere in the arguments (e.g. inside an iovec), or ''."""
    m = re.search(r'"((?:[^"\\]|\\.)*)"', ", ".join(args), re.S)
    return c_unescape(m.group(1)) if m else ""


def parse_strace(text: str) -> list[Call]:
    """All completed syscalls, ordered by entry line. Calls still pending at the end are dropped."""
    calls: list[Call] = []
    pending: dict[int, tuple[int, str, str, str]] = {}
    for lineno, line in enumerate(text.splitlines()):
        m = _LINE.match(line)
        if not m:
            continue
        tid, time, rest = int(m.group(1)), m.group(2), m.group(3)
        if rest.startswith(("+++", "---")):
            continue
        r = _RESUMED.match(rest)
        if r:
            if tid not in pending:
                continue  # resumed without a recorded entry (trace started mid-call)
            start, t0, name, head = pending.pop(tid)
            body = head + r.group(2)
        else:
            c = _CALL.match(rest)
            if not c:
                continue
            start, t0, name, body = lineno, time, c.group(1), c.group(2)
            if body.endswith(_UNFINISHED):
                pending[tid] = (start, t0, name, body[: -len(_UNFINISHED)])
                continue
        cut = body.rfind(") = ")
        if cut < 0:
            continue  # e.g. a process that exited inside the call: no result, nothing to learn
        calls.append(Call(start, lineno, tid, t0, name, split_args(body[:cut]), body[cut + 4:]))
    calls.sort(key=lambda c: c.start)
    return calls


# ---- requests -----------------------------------------------------------------------------------
@dataclass
class Exchange:
    """One HTTP request on one connection: from the read that returned its request line to the
    write of its final (non-100) status line."""
    conn: str
    request: Call
    request_line: str
    response: Call | None = None
    status: int | None = None


_TCP = re.compile(r"^TCP(?:v6)?:\[(.+?):(\d+)->(.+?):(\d+)\]$")


def server_conn(call: Call, port: int) -> str | None:
    """The connection label if the call's first argument is an accepted socket of `port`."""
    t = fd_target(call.args[0]) if call.args else None
    m = _TCP.match(t or "")
    return t if m and int(m.group(2)) == port else None


def _complete(c: Call, data: str) -> bool:
    """The call's data was shown whole (not cut at strace's -s limit)."""
    return c.retval == len(data)


def exchanges(calls: list[Call], port: int) -> list[Exchange]:
    """Requests and their responses, in order. A request line may arrive over several reads (the
    server first reads 24 bytes to look for an HTTP/2 preface), so reads are joined up to CRLF."""
    out: list[Exchange] = []
    open_by_conn: dict[str, Exchange] = {}
    partial: dict[str, Exchange] = {}  # request line not complete yet
    starts = tuple(m + " " for m in HTTP_METHODS)
    for c in calls:
        conn = server_conn(c, port)
        if not conn or not c.ok:
            continue
        data = first_string(c.args[1:])
        if c.name in SOCKET_READS and c.retval:
            if conn in partial:
                ex = partial[conn]
                ex.request_line += data
            elif conn not in open_by_conn and data.startswith(starts):
                ex = Exchange(conn, c, data)
                out.append(ex)
                open_by_conn[conn] = ex
            else:
                continue
            if "\r\n" in ex.request_line or not _complete(c, data):
                ex.request_line = ex.request_line.split("\r\n", 1)[0]
                partial.pop(conn, None)
            else:
                partial[conn] = ex
        elif c.name in SOCKET_WRITES and conn in open_by_conn:
            m = re.match(r"^HTTP/1\.[01] (\d{3})", data)
            if m and m.group(1) != "100":
                ex = open_by_conn.pop(conn)
                partial.pop(conn, None)
                ex.response, ex.status = c, int(m.group(1))
    return out


# ---- durability rules ---------------------------------------------------------------------------
class Trace:
    """A parsed log plus the data dir, with path helpers. Paths are resolved to data-dir-relative
    strings; anything outside the data dir is None."""

    def __init__(self, text: str, data_dir: str, cwd: str, port: int):
        self.calls = parse_strace(text)
        self.data_dir = os.path.realpath(data_dir)
        self.cwd = os.path.realpath(cwd)
        self.port = port
        self.exchanges = exchanges(self.calls, port)

    def rel(self, path: str | None, base: str | None = None) -> str | None:
        if path is None:
            return None
        p = PurePosixPath(path)
        if not p.is_absolute():
            p = PurePosixPath(base or self.cwd) / p
        p = PurePosixPath(os.path.normpath(str(p)))
        try:
            r = p.relative_to(self.data_dir)
        except ValueError:
            return None
        return str(r)

    def fd_rel(self, call: Call, i: int = 0) -> str | None:
        if len(call.args) <= i:
            return None
        return self.rel(fd_target(call.args[i]))

    def path_arg(self, call: Call, dirfd_index: int | None, path_index: int) -> str | None:
        """Path argument `path_index`, resolved against dirfd `dirfd_index` (or the cwd)."""
        raw = string_arg(call.args[path_index]) if len(call.args) > path_index else None
        if raw is None:
            return None
        base = None
        if dirfd_index is not None and not raw.startswith("/"):
            base = fd_target(call.args[dirfd_index])
        return self.rel(raw, base)

    def renamed(self, c: Call) -> tuple[str | None, str | None]:
        if c.name in ("rename", "link"):
            return self.path_arg(c, None, 0), self.path_arg(c, None, 1)
        return self.path_arg(c, 0, 1), self.path_arg(c, 2, 3)

    def made_dir(self, c: Call) -> str | None:
        return self.path_arg(c, None, 0) if c.name == "mkdir" else self.path_arg(c, 0, 1)

    def opened(self, c: Call) -> tuple[str | None, str]:
        """(path, flags text) of an open call."""
        if c.name in ("open", "creat"):
            return self.path_arg(c, None, 0), (c.args[1] if c.name == "open" and len(c.args) > 1
                                                else "O_CREAT|O_WRONLY|O_TRUNC")
        return self.path_arg(c, 0, 1), (c.args[2] if len(c.args) > 2 else "")


@dataclass
class Verdict:
    label: str
    problems: list[str]
    published: list[str] = field(default_factory=list)  # files renamed into shards/
    wal_commit: bool = False


def window(trace: Trace, ex: Exchange) -> list[Call]:
    """Calls that started after the request line was read and before the response was written."""
    assert ex.response is not None
    return [c for c in trace.calls if ex.request.end < c.start < ex.response.start]


def check_exchange(trace: Trace, ex: Exchange, label: str, *, min_renames: int,
                   self_syncing: set[str]) -> Verdict:
    """The rules for one acknowledged mutating request (see docs/testing.md, "Durability order").

    `self_syncing` are the paths opened with O_SYNC/O_DSYNC (each of their writes is its own sync).
    """
    v = Verdict(label, [])
    p = v.problems
    calls = window(trace, ex)
    resp = ex.response
    before_resp = [c for c in calls if c.end < resp.start]
    # Everything that made a shard durable; the metadata commit must come after all of it.
    shard_durable_end = -1
    shard_durable_what = ""

    def durable_at(call: Call, what: str) -> None:
        nonlocal shard_durable_end, shard_durable_what
        if call.end > shard_durable_end:
            shard_durable_end, shard_durable_what = call.end, what

    def syncs_of(rel: str, after: int, before: int) -> list[Call]:
        """Calls that made `rel` durable: its fsync/fdatasync, or a whole-file-system sync."""
        return [c for c in before_resp if c.ok and c.start > after and c.end < before
                and ((c.name in FILE_SYNCS and trace.fd_rel(c) == rel)
                     or c.name in GLOBAL_SYNCS)]

    def first_done(syncs: list[Call]) -> Call:
        return min(syncs, key=lambda c: c.end)

    # Shards must never be written in place.
    for c in calls:
        if c.name in FILE_WRITES and SHARD_FINAL_RE.match(trace.fd_rel(c) or ""):
            p.append(f"{label}: WRITTEN IN PLACE: {c.where()} writes {trace.fd_rel(c)} under shards/ "
                     "(a shard must be written under tmp/, fsynced, then renamed)")

    renames = [c for c in calls if c.name in RENAMES and c.ok]
    for r in renames:
        src, dst = trace.renamed(r)
        if not (dst and SHARD_FINAL_RE.match(dst)):
            continue
        v.published.append(dst)
        ms, md = SHARD_TMP_RE.match(src or ""), SHARD_FINAL_RE.match(dst)
        if not ms or ms.group(1) != md.group(1):
            p.append(f"{label}: NOT FROM TMP: {r.where()} puts {dst} into shards/ from {src!r}, "
                     "not from the same disk's tmp/")
            continue
        if r.end >= resp.start:
            p.append(f"{label}: RENAMED AFTER RESPONSE: {r.where()} renames {src} -> {dst} but "
                     f"returns only after the response ({resp.where()})")
            continue
        # 1. The temporary file: written, then synced after its last write, before the rename.
        writes = [c for c in trace.calls if c.name in FILE_WRITES and c.ok
                  and trace.fd_rel(c) == src and c.start < r.start]
        if not writes:
            p.append(f"{label}: UNSEEN WRITE: no write to {src} seen before its rename at "
                     f"{r.where()} (the trace cannot show what made this file)")
            continue
        last_write = max(writes, key=lambda c: c.end)
        if last_write.start < ex.request.end:
            p.append(f"{label}: LATE PUBLISH: {src} was written before this request began "
                     f"({last_write.where()}) and renamed into shards/ only now ({r.where()}): "
                     "an earlier request was acknowledged before its shard was in place")
            continue
        if src in self_syncing:
            durable_at(last_write, f"O_SYNC write to {src}")
        else:
            synced = syncs_of(src, last_write.end, r.start)
            if not synced:
                p.append(f"{label}: MISSING FILE FSYNC: shard file {src} was renamed to {dst} "
                         f"({r.where()}) without an fsync/fdatasync after its last write "
                         f"({last_write.where()})")
            else:
                durable_at(first_done(synced), f"fsync of {src}")
        durable_at(r, f"rename to {dst}")
        # 2. The destination directory: synced after the rename, before the response.
        ddir = str(PurePosixPath(dst).parent)
        dsync = syncs_of(ddir, r.end, resp.start)
        if not dsync:
            p.append(f"{label}: MISSING DIRECTORY FSYNC: directory {ddir} was not fsynced after "
                     f"the rename of {src} into it ({r.where()}) and before the response "
                     f"({resp.where()})")
        else:
            durable_at(first_done(dsync), f"fsync of directory {ddir}")

    # 3. Directories created under shards/: their parent synced after the mkdir.
    for c in calls:
        if c.name not in MKDIRS or not c.ok:
            continue
        made = trace.made_dir(c)
        if not made or not SHARD_FINAL_RE.match(made):
            continue
        parent = str(PurePosixPath(made).parent)
        psync = syncs_of(parent, c.end, resp.start)
        if not psync:
            p.append(f"{label}: MISSING DIRECTORY FSYNC: {made} was created ({c.where()}) but its "
                     f"parent {parent} was not fsynced before the response")
        else:
            durable_at(first_done(psync), f"fsync of {parent} after mkdir")

    if len(v.published) < min_renames:
        p.append(f"{label}: NO SHARDS: expected at least {min_renames} shard file(s) renamed "
                 f"from tmp/ into shards/ while the request was in progress, "
                 f"saw {len(v.published)}")

    # 4. The metadata commit: a WAL write after every shard is durable, then a WAL sync, then the
    #    response.
    wal_writes = [c for c in before_resp if c.name in FILE_WRITES and c.ok
                  and WAL_RE.match(trace.fd_rel(c) or "")]
    if not wal_writes:
        p.append(f"{label}: MISSING METADATA COMMIT: no write to the RocksDB WAL (meta/*.log) "
                 f"while the request was in progress, before the response ({resp.where()})")
        return v
    late = [w for w in wal_writes if w.start > shard_durable_end]
    if not late:
        p.append(f"{label}: MISORDERED: every WAL write of the request (last at "
                 f"{wal_writes[-1].where()}) comes before the shards were durable (last: "
                 f"{shard_durable_what} at line {shard_durable_end + 1})")
        return v
    for w in late:
        wal = trace.fd_rel(w)
        if wal in self_syncing or syncs_of(wal, w.end, resp.start):
            v.wal_commit = True
            break
    if not v.wal_commit:
        w = late[-1]
        p.append(f"{label}: MISSING WAL SYNC: the metadata commit was written to the WAL "
                 f"({w.where()} on {trace.fd_rel(w)}) but no fsync/fdatasync of the WAL followed "
                 f"before the response ({resp.where()})")
    return v


def check_new_key(trace: Trace, ex: Exchange, label: str, *, self_syncing: set[str]) -> list[str]:
    """A request that stored a new key (a new version's or upload's DEK): the key store was
    written and synced, and only then came a WAL write and its sync, all before the response.
    (A version committed before its key is durable would be unreadable after a power cut.)"""
    calls = window(trace, ex)
    resp = ex.response
    before = [c for c in calls if c.end < resp.start]
    writes = [c for c in before if c.name in FILE_WRITES and c.ok
              and KEYS_RE.match(trace.fd_rel(c) or "")]
    if not writes:
        return [f"{label}: MISSING KEY WRITE: no write to keys/slots before the response "
                f"({resp.where()})"]
    last = max(writes, key=lambda c: c.end)
    path = trace.fd_rel(last)
    if path in self_syncing:
        durable = last.end
    else:
        syncs = [c for c in before if c.ok and c.start > last.end
                 and ((c.name in FILE_SYNCS and trace.fd_rel(c) == path) or c.name in GLOBAL_SYNCS)]
        if not syncs:
            return [f"{label}: MISSING KEY FSYNC: {path} written ({last.where()}) but not "
                    f"synced before the response ({resp.where()})"]
        durable = min(c.end for c in syncs)
    for w in before:
        if w.name in FILE_WRITES and w.ok and w.start > durable and WAL_RE.match(trace.fd_rel(w) or ""):
            wal = trace.fd_rel(w)
            if wal in self_syncing or any(
                    c.ok and c.start > w.end and c.name in FILE_SYNCS | GLOBAL_SYNCS
                    and (c.name in GLOBAL_SYNCS or trace.fd_rel(c) == wal) for c in before):
                return []
    return [f"{label}: MISORDERED KEY: no synced WAL commit after the key store was durable "
            f"(line {durable + 1}) and before the response ({resp.where()})"]


def self_syncing_paths(trace: Trace) -> set[str]:
    out = set()
    for c in trace.calls:
        if c.name in OPENS and c.ok:
            path, flags = trace.opened(c)
            if path and re.search(r"\bO_(D)?SYNC\b", flags):
                out.add(path)
    return out


def unsupported(trace: Trace) -> list[str]:
    """Syscalls that would make writes invisible to this kind of check."""
    return [f"{c.where()}: io_uring is in use; strace cannot see the file I/O it submits"
            for c in trace.calls if c.name == "io_uring_setup" and c.ok]


def summary(problems: list[str]) -> str:
    """'3 MISSING WAL SYNC, 1 MISORDERED': the kinds of problem found, most frequent first."""
    kinds: dict[str, int] = {}
    for prob in problems:
        m = re.search(r"(?:^|: )([A-Z][A-Z ]+[A-Z]): ", prob)
        k = m.group(1) if m else "other"
        kinds[k] = kinds.get(k, 0) + 1
    return ", ".join(f"{n} {k}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
