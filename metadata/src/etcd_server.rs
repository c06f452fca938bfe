//! Starts real etcd members on 127.0.0.1 (Debian's `/usr/bin/etcd`) with the flags Strata runs
//! them with, for tests and local clusters. A missing etcd binary is an error, never a skip.
//!
//! Members are children of one long-lived thread that asks the kernel to kill them when the
//! process that started them dies (`PR_SET_PDEATHSIG` fires when the spawning *thread* exits, so
//! the spawner must outlive every test thread), and they are killed on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::kv_etcd::{DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_TXN_OPS};

/// The etcd binary: `STRATA_ETCD_BIN`, else `/usr/bin/etcd`, else `etcd` on the PATH.
pub fn etcd_binary() -> PathBuf {
    if let Ok(p) = std::env::var("STRATA_ETCD_BIN") {
        return PathBuf::from(p);
    }
    let debian = Path::new("/usr/bin/etcd");
    if debian.exists() {
        return debian.to_path_buf();
    }
    PathBuf::from("etcd")
}

/// The flags every Strata etcd member runs with (docs/cluster.md explains each).
pub fn member_flags() -> Vec<String> {
    vec![
        format!("--max-txn-ops={DEFAULT_MAX_TXN_OPS}"),
        format!("--max-request-bytes={DEFAULT_MAX_REQUEST_BYTES}"),
        // etcd's recommended maximum database size.
        "--quota-backend-bytes=8589934592".into(),
        // Strata compacts history itself (the etcd-maintenance worker), on a revision window.
        "--auto-compaction-retention=0".into(),
    ]
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

type SpawnReq = (Command, mpsc::Sender<std::io::Result<Child>>);

/// The thread that spawns members (see the module doc).
fn spawner() -> &'static Mutex<mpsc::Sender<SpawnReq>> {
    static SPAWNER: std::sync::OnceLock<Mutex<mpsc::Sender<SpawnReq>>> = std::sync::OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnReq>();
        std::thread::Builder::new()
            .name("etcd-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
                // The channel lives in a static: this thread runs until the process exits.
                loop {
                    std::thread::park();
                }
            })
            .expect("spawn the etcd spawner thread");
        Mutex::new(tx)
    })
}

fn spawn(mut cmd: Command) -> std::io::Result<Child> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt as _;
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
    }
    let (tx, rx) = mpsc::channel();
    spawner()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, tx))
        .map_err(|_| std::io::Error::other("etcd spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| std::io::Error::other("etcd spawner thread is gone"))?
}

/// One member of a local cluster.
pub struct Member {
    pub name: String,
    pub client_url: String,
    pub peer_url: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    args: Vec<String>,
}

impl Member {
    /// `host:port` of the client URL.
    pub fn endpoint(&self) -> String {
        self.client_url.trim_start_matches("http://").to_string()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the member again on its data dir (after `kill`).
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.kill();
        let mut args = self.args.clone();
        // A restarted member rejoins from its data dir; the initial-cluster flags are ignored.
        args.retain(|a| !a.starts_with("--initial-cluster-state"));
        self.child = Some(start(&args, &self.log)?);
        Ok(())
    }
}

fn start(args: &[String], log: &Path) -> std::io::Result<Child> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let mut cmd = Command::new(etcd_binary());
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    spawn(cmd).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot start {} ({e}); install Debian's etcd-server (scripts/setup.sh)",
                etcd_binary().display()
            ),
        )
    })
}

/// A running local etcd cluster of one or more members.
pub struct EtcdCluster {
    pub members: Vec<Member>,
}

impl EtcdCluster {
    /// Starts `n` members under `dir` on free 127.0.0.1 ports and waits (at most 20 s) until
    /// every member answers a health check.
    pub fn start(dir: &Path, n: usize) -> std::io::Result<Self> {
        assert!(n >= 1);
        std::fs::create_dir_all(dir)?;
        let mut ports = Vec::new();
        for _ in 0..n {
            ports.push((free_port()?, free_port()?));
        }
        let token = format!("strata-{}", rand::random::<u64>());
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect();
        let initial = initial.join(",");
        let mut members = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let name = format!("m{i}");
            let data_dir = dir.join(&name);
            let log = dir.join(format!("{name}.log"));
            let client_url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let mut args = vec![
                format!("--name={name}"),
                format!("--data-dir={}", data_dir.display()),
                format!("--listen-client-urls={client_url}"),
                format!("--advertise-client-urls={client_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster={initial}"),
                format!("--initial-cluster-token={token}"),
                "--initial-cluster-state=new".into(),
                // Fast elections on loopback: tests see a new raft leader in well under a second.
                "--heartbeat-interval=50".into(),
                "--election-timeout=500".into(),
                "--logger=zap".into(),
                "--log-level=warn".into(),
            ];
            args.extend(member_flags());
            let child = start(&args, &log)?;
            members.push(Member {
                name,
                client_url,
                peer_url,
                data_dir,
                log,
                child: Some(child),
                args,
            });
        }
        let cluster = EtcdCluster { members };
        cluster.wait_healthy(Duration::from_secs(20))?;
        Ok(cluster)
    }

    /// `host:port` of every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::endpoint).collect()
    }

    /// `etcd://h:p,h:p/PREFIX`.
    pub fn url(&self, prefix: &str) -> String {
        format!("etcd://{}/{prefix}", self.endpoints().join(","))
    }

    fn wait_healthy(&self, limit: Duration) -> std::io::Result<()> {
        let deadline = Instant::now() + limit;
        for m in &self.members {
            let addr: std::net::SocketAddr = m
                .endpoint()
                .parse()
                .map_err(|e| std::io::Error::other(format!("{e}")))?;
            loop {
                if health_ok(&addr) {
                    break;
                }
                if Instant::now() > deadline {
                    let log = std::fs::read_to_string(&m.log).unwrap_or_default();
                    let tail: String = log.lines().rev().take(20).collect::<Vec<_>>().join("\n");
                    return Err(std::io::Error::other(format!(
                        "etcd member {} did not become healthy; log tail:\n{tail}",
                        m.name
                    )));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }
}

/// `GET /health` answers `"health":"true"` once the member has a raft leader.
fn health_ok(addr: &std::net::SocketAddr) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains("\"health\":\"true\"")
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            m.kill();
        }
    }
}
