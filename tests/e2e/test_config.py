"""`strata serve --config FILE` (issue 16, config file; docs/config.md): a server configured by a
TOML file alone answers S3; a flag and an environment variable override the file; a file with an
unknown key, a wrong type or a bad value stops the start with the key named, and creates nothing."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import conftest
import harness
from conftest import make_s3, unique_bucket
from harness import Server, free_port, scrubbed_environ, strata_binary

pytestmark = pytest.mark.strata_only(reason="strata's own config file")


@pytest.fixture
def config_server(tmp_path):
    """Servers started with `strata serve --config FILE` only; stopped at test end."""
    made: list[Server] = []

    def factory(name: str, config: str, extra_args: list[str] | None = None,
                env: dict[str, str] | None = None) -> Server:
        s = Server(tmp_path / name, name)
        path = s.workdir / "strata.toml"
        path.write_text(config.format(port=s.port, data=s.data_dir))
        s.serve_args = ["--config", str(path)]
        # Nothing from the harness's defaults: the file (and what the test adds) is all.
        s.extra_args = [a.format(port=s.port) for a in extra_args or []]
        if harness.META == "etcd":
            s.extra_env["STRATA_META"] = harness.shared_etcd().url(f"e2e-cfg-{name}-{s.port}/")
        s.extra_env.update({k: v.format(port=s.port) for k, v in (env or {}).items()})
        made.append(s)
        conftest._ACTIVE.append(s)
        s.start()
        return s

    yield factory
    for s in made:
        s.stop()
        conftest._ACTIVE.remove(s)


def _json_lines(srv: Server) -> list[dict]:
    out = []
    for raw in srv.log_path.read_text(errors="replace").splitlines():
        if not raw.strip() or raw.startswith("=====") or raw.startswith("[stdout]"):
            continue
        out.append(json.loads(raw))  # a text line here fails: the file's log-format is json
    return out


def _round_trip(srv: Server) -> None:
    s3 = make_s3(srv.endpoint, srv.access_key, srv.secret_key)
    b = unique_bucket("cfg")
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="k", Body=b"from a config file")
    assert s3.get_object(Bucket=b, Key="k")["Body"].read() == b"from a config file"


FILE = """\
data-dir = "{data}"
listen = "127.0.0.1:{port}"
log-format = "json"
gc-grace-ms = 1000
"""


def test_server_started_from_a_config_file_alone_answers_s3(config_server):
    srv = config_server("only", FILE)
    # The harness checked the ready line names the file's port.
    _round_trip(srv)
    # The data went where the file said.
    assert (srv.data_dir / "meta").is_dir() or harness.META == "etcd"
    assert (srv.data_dir / "disks").is_dir()
    srv.stop()
    records = _json_lines(srv)
    loaded = [r for r in records if r.get("message") == "config file loaded"]
    assert loaded, records[:5]
    # Key names are logged, values never.
    assert "listen" in loaded[0]["applied"] and str(srv.port) not in json.dumps(loaded[0])
    assert any(r.get("target") == "strata::access" for r in records)


def test_a_flag_and_an_environment_variable_override_the_file(config_server):
    # The file names a port nobody listens on; the flag's port is the one announced and served.
    other = free_port()
    cfg = FILE.replace("{port}", str(other))
    srv = config_server("flag", cfg, extra_args=["--listen", "127.0.0.1:{port}"])
    assert srv.endpoint.endswith(f":{srv.port}") and srv.port != other
    _round_trip(srv)
    srv.stop()
    records = _json_lines(srv)  # log-format still from the file
    loaded = [r for r in records if r.get("message") == "config file loaded"][0]
    assert "listen" in loaded["overridden"], loaded

    srv2 = config_server("env", cfg, env={"STRATA_LISTEN": "127.0.0.1:{port}"})
    _round_trip(srv2)
    srv2.stop()
    loaded = [r for r in _json_lines(srv2) if r.get("message") == "config file loaded"][0]
    assert "listen" in loaded["overridden"], loaded


@pytest.mark.parametrize("text, key, words", [
    ('listn = "127.0.0.1:9000"\n', "listn", "unknown key"),
    ("disks = \"six\"\n", "disks", "must be an integer"),
    ('listen = "nope"\n', "listen", "invalid value"),
    ("[tls]\ncert = 5\nkey = \"k.pem\"\n", "tls.cert", "must be a string"),
    ('metrics-token = "0123456789abcdef-secret"\n', "metrics-token", "secret"),
    ("audit-retention-days = 89\n", "audit-retention-days", "3 months"),
])
def test_an_invalid_file_stops_the_start_naming_the_key(tmp_path, text, key, words):
    never = tmp_path / "never"
    path = tmp_path / "bad.toml"
    path.write_text(f'data-dir = "{never}"\n' + text)
    env = scrubbed_environ()
    for k in [k for k in env if k.startswith("STRATA_")]:
        del env[k]
    p = subprocess.run([str(strata_binary()), "serve", "--config", str(path)], env=env,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert p.returncode != 0, p
    assert f"`{key}`" in p.stderr and words in p.stderr and str(path) in p.stderr, p.stderr
    assert "0123456789abcdef" not in p.stderr + p.stdout
    assert "ready on" not in p.stdout
    assert not never.exists(), "a refused config created the data dir"
