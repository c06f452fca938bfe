"""Process harness for the end-to-end suite.

Starts the real `strata` binary (or, with STRATA_E2E_TARGET=moto, a reference `moto_server`) on a free
127.0.0.1 port with a temporary data directory, and builds isolated environments for every client.

Nothing here mocks anything: tests talk HTTP to a real process.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TARGET = os.environ.get("STRATA_E2E_TARGET", "strata").strip().lower()
if TARGET not in ("strata", "moto"):
    raise SystemExit(f"STRATA_E2E_TARGET must be 'strata' or 'moto', not {TARGET!r}")
IS_MOTO = TARGET == "moto"
REGION = "us-east-1"
READY_RE = re.compile(r"^strata: ready on (https?://127\.0\.0\.1:(\d+))\s*$")
START_TIMEOUT = float(os.environ.get("STRATA_E2E_START_TIMEOUT", "60"))
# The metadata tier of the servers the suite starts: "rocksdb" (default, DATA/meta) or "etcd"
# (one real etcd member for the whole run, started on first use; each server gets its own key
# prefix, so servers never see each other's data). A missing etcd fails, never skips.
META = os.environ.get("STRATA_E2E_META", "rocksdb").strip().lower()
if META not in ("rocksdb", "etcd"):
    raise SystemExit(f"STRATA_E2E_META must be 'rocksdb' or 'etcd', not {META!r}")

# Variables that silently change how clients behave. They are removed from every client environment
# (and from this process, because boto3 runs in-process).
_SCRUB_EXACT = {
    # An operator's master key must never reach a test server: fixtures make their own.
    "STRATA_MASTER_KEY",
    "AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR",
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
    "http_proxy", "https_proxy", "all_proxy", "no_proxy",
}
_SCRUB_PREFIXES = ("AWS_", "RCLONE_", "RESTIC_", "S3CMD_", "BOTO_")


def scrubbed_environ(base: dict | None = None) -> dict:
    env = dict(os.environ if base is None else base)
    for k in list(env):
        if k in _SCRUB_EXACT or k.startswith(_SCRUB_PREFIXES):
            del env[k]
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def random_keys() -> tuple[str, str]:
    alphabet = string.ascii_uppercase + string.digits
    ak = "STRATATEST" + "".join(secrets.choice(alphabet) for _ in range(10))
    sk = secrets.token_urlsafe(30)[:40]
    return ak, sk


def strata_binary() -> Path:
    b = os.environ.get("STRATA_BIN")
    return Path(b) if b else REPO / "target" / "debug" / "strata"


def venv_bin(name: str) -> str | None:
    """A client installed next to the running interpreter (the project .venv) wins over PATH."""
    cand = Path(sys.executable).parent / name
    if cand.exists():
        return str(cand)
    return shutil.which(name)


class Etcd:
    """Real etcd members on 127.0.0.1 with the flags Strata runs them with (docs/cluster.md)."""

    FLAGS = ["--max-txn-ops=10240", "--max-request-bytes=8388608",
             "--quota-backend-bytes=8589934592", "--auto-compaction-retention=0",
             "--heartbeat-interval=50", "--election-timeout=500", "--log-level=warn"]

    def __init__(self, workdir: Path, members: int = 1):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        binary = os.environ.get("STRATA_ETCD_BIN") or shutil.which("etcd") or "/usr/bin/etcd"
        if not Path(binary).exists() and not shutil.which(binary):
            raise ServerError("etcd not found: install Debian's etcd-server (scripts/setup.sh)", fatal=True)
        ports = [(free_port(), free_port()) for _ in range(members)]
        cluster = ",".join(f"m{i}=http://127.0.0.1:{p}" for i, (_, p) in enumerate(ports))
        self.endpoints = [f"127.0.0.1:{c}" for c, _ in ports]
        token = f"strata-e2e-{secrets.token_hex(4)}"  # one per cluster: members must agree
        self._cmds: list[list[str]] = []
        for i, (c, p) in enumerate(ports):
            self._cmds.append([binary, f"--name=m{i}", f"--data-dir={self.workdir / f'm{i}'}",
                               f"--listen-client-urls=http://127.0.0.1:{c}",
                               f"--advertise-client-urls=http://127.0.0.1:{c}",
                               f"--listen-peer-urls=http://127.0.0.1:{p}",
                               f"--initial-advertise-peer-urls=http://127.0.0.1:{p}",
                               f"--initial-cluster={cluster}", "--initial-cluster-state=new",
                               f"--initial-cluster-token={token}",
                               *self.FLAGS])
        self.procs: list[subprocess.Popen] = []
        self._launch()

    def _launch(self) -> None:
        self.procs = []
        for i, cmd in enumerate(self._cmds):
            log = open(self.workdir / f"m{i}.log", "ab")
            self.procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                               start_new_session=True))
        deadline = time.monotonic() + 20
        for ep in self.endpoints:
            while True:
                try:
                    body = urllib.request.urlopen(f"http://{ep}/health", timeout=1).read()
                    if b'"health":"true"' in body:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise ServerError(f"etcd member {ep} not healthy within 20s", fatal=True)
                time.sleep(0.05)

    def restart(self) -> None:
        """Starts the stopped members again on their data dirs (same ports)."""
        self.stop()
        self._launch()

    def url(self, prefix: str) -> str:
        return "etcd://" + ",".join(self.endpoints) + "/" + prefix

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)


_SHARED_ETCD: Etcd | None = None


def shared_etcd() -> Etcd:
    """The etcd of this test run (started once; stopped when the run ends)."""
    global _SHARED_ETCD
    if _SHARED_ETCD is None:
        import atexit
        import tempfile
        _SHARED_ETCD = Etcd(Path(tempfile.mkdtemp(prefix="strata-e2e-etcd-")))
        atexit.register(_SHARED_ETCD.stop)
    return _SHARED_ETCD


class ServerError(RuntimeError):
    def __init__(self, msg: str, fatal: bool = False):
        super().__init__(msg)
        self.fatal = fatal  # retrying cannot help (e.g. the binary does not exist)


class Server:
    """One server process. `restart()` keeps the data dir and port; `kill9()` simulates a crash."""

    # Deleted data waits this long before GC removes it (`--gc-grace-ms`). Tests that check space
    # is reclaimed need it short; reads in flight are still protected by the server's read pins.
    DEFAULT_ARGS = ("--gc-grace-ms", "1000")

    def __init__(self, workdir: Path, name: str = "strata", region: str = REGION,
                 extra_args: list[str] | None = None, command_prefix: list[str] | None = None):
        self.workdir = Path(workdir)
        # Runs the server under another program (e.g. strace); "{workdir}" in it is replaced by
        # the work dir. Signals then go to the server itself, the prefix's child, so the wrapper
        # sees it exit and finishes on its own.
        self.command_prefix = [a.replace("{workdir}", str(self.workdir)) for a in command_prefix or []]
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.region = region
        self.data_dir = self.workdir / "data"
        self.data_dir.mkdir(exist_ok=True)
        # The test's own master key (never a production one): written before the first start,
        # so tests can also check what the key hierarchy protects (test_keys.py).
        key_file = self.data_dir / "master.key"
        if not key_file.exists():
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))
        self.log_path = self.workdir / "server.log"
        self.port = free_port()
        self.access_key, self.secret_key = random_keys()
        self.proc: subprocess.Popen | None = None
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._log = None
        self._threads: list[threading.Thread] = []
        self.starts = 0
        # `strata serve` options beyond data dir, listen address and region; may be changed
        # between restarts (e.g. a different --disks).
        self.extra_args: list[str] = list(self.DEFAULT_ARGS) + list(extra_args or [])
        if META == "etcd" and not IS_MOTO:
            # Its own prefix: a restart (same Server) sees its data, other servers do not.
            self.extra_args += ["--meta", shared_etcd().url(f"e2e-{secrets.token_hex(6)}/")]
        # Extra environment for the next starts.
        self.extra_env: dict[str, str] = {}
        # Replaces `--data-dir DIR --listen 127.0.0.1:PORT --region R` when set, e.g.
        # `["--config", FILE]` for a server configured by a file (test_config.py).
        self.serve_args: list[str] | None = None

    # ---- lifecycle -------------------------------------------------------------------------------
    def start(self) -> "Server":
        assert self.proc is None or self.proc.poll() is not None, "already running"
        last_err = None
        for attempt in range(3):  # a just-freed port can be briefly unavailable after a restart
            try:
                self._start_once()
                self.starts += 1
                return self
            except ServerError as e:
                if e.fatal:
                    raise
                last_err = e
                self._reap()
                time.sleep(1.0)
        raise last_err  # type: ignore[misc]

    def _start_once(self) -> None:
        self._log = open(self.log_path, "ab", buffering=0)
        self._log.write(f"\n===== start #{self.starts + 1} ({TARGET}) {time.ctime()} =====\n".encode())
        env = scrubbed_environ()
        if IS_MOTO:
            moto = venv_bin("moto_server")
            if not moto:
                raise ServerError("moto_server not found: pip install 'moto[server]' into .venv", fatal=True)
            cmd = [moto, "-H", "127.0.0.1", "-p", str(self.port)]
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log,
                                         stderr=self._log, env=env, start_new_session=True)
            self._wait_http()
            return
        # A certificate without a separate --tls-listen makes the one listener HTTPS.
        tls_only = any(a in ("--tls-self-signed", "--tls-cert") for a in self.extra_args) \
            and "--tls-listen" not in self.extra_args
        self.endpoint = f"{'https' if tls_only else 'http'}://127.0.0.1:{self.port}"
        binary = strata_binary()
        if not binary.exists():
            raise ServerError(f"strata binary not found at {binary}: run `cargo build --bin strata`", fatal=True)
        env.update({
            "STRATA_ADMIN_ACCESS_KEY": self.access_key,
            "STRATA_ADMIN_SECRET_KEY": self.secret_key,
            "RUST_BACKTRACE": "1",
        })
        env.update(self.extra_env)
        base = self.serve_args if self.serve_args is not None else [
            "--data-dir", str(self.data_dir), "--listen", f"127.0.0.1:{self.port}",
            "--region", self.region]
        cmd = self.command_prefix + [str(binary), "serve", *base, *self.extra_args]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self._log, env=env, start_new_session=True)
        ready = threading.Event()
        found: list[str] = []

        def pump(stream, log):
            for raw in iter(stream.readline, b""):
                log.write(b"[stdout] " + raw)
                m = READY_RE.match(raw.decode("utf-8", "replace"))
                if m and not ready.is_set():
                    found.append(m.group(1))
                    ready.set()
            stream.close()

        t = threading.Thread(target=pump, args=(self.proc.stdout, self._log), daemon=True)
        t.start()
        self._threads.append(t)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if ready.wait(0.1):
                break
            if self.proc.poll() is not None:
                raise ServerError(f"strata exited with {self.proc.returncode} before ready\n"
                                  + self.log_tail())
        else:
            self._reap()
            raise ServerError(f"strata not ready within {START_TIMEOUT}s\n" + self.log_tail())
        if found[0] != self.endpoint:
            # Not left running: a retry would find its data dir locked.
            self.proc.kill()
            self.proc.wait(10)
            raise ServerError(f"ready line announced {found[0]}, expected {self.endpoint}")

    def _wait_http(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"{TARGET} exited early\n" + self.log_tail())
            try:
                urllib.request.urlopen(self.endpoint + "/", timeout=1).read()
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.1)
        raise ServerError(f"{TARGET} not answering within {START_TIMEOUT}s\n" + self.log_tail())

    def server_pid(self) -> int | None:
        """Pid of the server process: the one started, or with a command prefix, its child."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        if not self.command_prefix:
            return self.proc.pid
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == self.proc.pid:  # field 4 of stat, the parent pid
                return int(stat.parent.name)
        return None

    def _signal(self, sig: int) -> None:
        pid = self.server_pid()
        if pid is not None:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout: float = 15.0) -> None:
        """Graceful stop (SIGTERM, then SIGKILL after `timeout`)."""
        if self.proc and self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)  # the wrapper and the server
                except ProcessLookupError:
                    pass
                self.proc.wait(10)
        self._reap()

    def kill9(self) -> None:
        """Crash: SIGKILL with no warning."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self._signal(signal.SIGKILL)
            self.proc.wait(10)
        self._reap()

    def restart(self, crash: bool = False) -> None:
        if IS_MOTO:
            raise ServerError("moto keeps state in memory; restart tests are strata-only")
        self.kill9() if crash else self.stop()
        self.start()

    def _reap(self) -> None:
        for t in self._threads:
            t.join(5)
        self._threads.clear()
        if self._log:
            self._log.close()
            self._log = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text("utf-8", "replace").splitlines()
        except OSError:
            return "(no log)"
        return f"--- tail of {self.log_path} ---\n" + "\n".join(text[-lines:])

    # ---- admin CLI -------------------------------------------------------------------------------
    def admin(self, *args: str, offline: bool = False, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run `strata admin ...` against this server (strata-only)."""
        if IS_MOTO:
            raise ServerError("admin CLI exists only for strata")
        cmd = [str(strata_binary()), "admin"]
        if not offline:
            # `--opt=value`: a random secret may start with '-', which clap would take for a flag.
            cmd += [f"--endpoint={self.endpoint}", f"--access-key={self.access_key}",
                    f"--secret-key={self.secret_key}"]
        cmd += list(args)
        return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, env=scrubbed_environ())

    def admin_json(self, *args: str) -> dict:
        r = self.admin(*args)
        assert r.returncode == 0, f"strata admin {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
        return json.loads(r.stdout)


# STRATA_E2E_CLUSTER=1: the shared server of the suite is a whole cluster on 127.0.0.1 instead of
# one `strata serve` (scripts/local-cluster.sh: one etcd member, six storage nodes with RS(4,2)
# and the replicated key service, two gateways); clients are spread over both gateways (each read
# of `endpoint` names the next gateway, so each client, fixture or CLI call alternates), so
# requests are served by both the leader and a process that is not. Tests that start their own
# servers (`fresh_server`) still get single processes.
CLUSTER = os.environ.get("STRATA_E2E_CLUSTER", "") == "1"


class ClusterServer(Server):
    """A local cluster standing in for the shared server: same endpoint/credentials/admin API."""

    def __init__(self, workdir: Path, name: str = "cluster"):
        super().__init__(workdir, name)
        self.cluster_dir = self.workdir / "cluster"
        self.env_file = self.cluster_dir / "cluster.env"
        self.logs: list[Path] = []
        self.gateways: list[str] = []
        self._next_gateway = 0

    @property
    def endpoint(self) -> str:
        # Round-robin over the gateways: both serve every request of the suites.
        if not self.gateways:
            return ""
        url = self.gateways[self._next_gateway % len(self.gateways)]
        self._next_gateway += 1
        return url

    @endpoint.setter
    def endpoint(self, value: str) -> None:
        self.gateways = [value] if value else []

    def start(self) -> "Server":
        script = Path(__file__).resolve().parents[2] / "scripts" / "local-cluster.sh"
        env = dict(scrubbed_environ(), STRATA_BIN=str(strata_binary()),
                   STRATA_GATEWAY_ARGS=" ".join(self.DEFAULT_ARGS))
        r = subprocess.run(["bash", str(script), "up", str(self.cluster_dir), "--etcd", "1",
                            "--nodes", "6", "--gateways", "2"], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=180, env=env)
        if r.returncode != 0:
            raise ServerError(f"local cluster did not start:\n{r.stdout}\n{r.stderr}", fatal=True)
        vals = {}
        for line in self.env_file.read_text().splitlines():
            if "=" in line and not line.startswith("#"):
                k, v = line.split("=", 1)
                vals[k] = v.strip().strip("'\"")
        self.gateways = vals["STRATA_GATEWAYS"].split(",")
        self.access_key, self.secret_key = vals["STRATA_ACCESS_KEY"], vals["STRATA_SECRET_KEY"]
        self.logs = [Path(p) for k in ("STRATA_GATEWAY_LOGS", "STRATA_NODE_LOGS")
                     for p in vals.get(k, "").split()]
        self.starts += 1
        return self

    def stop(self, timeout: float = 15.0) -> None:
        script = Path(__file__).resolve().parents[2] / "scripts" / "local-cluster.sh"
        subprocess.run(["bash", str(script), "down", str(self.cluster_dir)], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=60)

    def alive(self) -> bool:
        return self.env_file.exists()

    def log_tail(self, lines: int = 30) -> str:
        out = []
        for p in self.logs[:3]:
            try:
                text = p.read_text("utf-8", "replace").splitlines()
            except OSError:
                continue
            out.append(f"--- tail of {p} ---\n" + "\n".join(text[-lines:]))
        return "\n".join(out) or "(no log)"

    def restart(self, crash: bool = False) -> None:
        raise ServerError("the shared cluster is not restarted by tests")


def run(cmd: list[str], env: dict, timeout: float = 300, check: bool = True,
        cwd: str | os.PathLike | None = None, input: bytes | None = None) -> subprocess.CompletedProcess:
    """Run a client command with a bounded timeout; on failure raise with its full output."""
    r = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, timeout=timeout,
                       stdin=subprocess.DEVNULL if input is None else None, input=input)
    if check and r.returncode != 0:
        raise AssertionError(
            f"command failed with exit {r.returncode}: {' '.join(map(str, cmd))}\n"
            f"--- stdout ---\n{r.stdout.decode('utf-8', 'replace')[-4000:]}\n"
            f"--- stderr ---\n{r.stderr.decode('utf-8', 'replace')[-4000:]}")
    return r
