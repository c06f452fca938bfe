//! Cluster mode through the real binaries: `strata cluster init|issue`, six `strata node
//! --cluster` processes and a `strata gateway --cluster`, on 127.0.0.1 with free ports.
//!
//! - A node refuses TLS clients without a certificate of its cluster CA (none, or another CA's).
//! - Kill -9 a node under a mixed PUT/GET load: no GET fails, PUTs keep succeeding (degraded,
//!   recorded); bring it back empty (same node id, wiped data dir), the rebuild restores full
//!   redundancy: every shard of every chunk present on its node and verifying, bytes exact.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject as _;
use sha2::{Digest, Sha256};

const BIN: &str = env!("CARGO_BIN_EXE_strata");
const AK: &str = "clusteradmin";
const SK: &str = "cluster-secret-key";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn strata(args: &[&str]) {
    let o = Command::new(BIN).args(args).output().expect("strata runs");
    assert!(
        o.status.success(),
        "strata {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Child processes killed on drop (bounded test, nothing left running).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_port(addr: SocketAddr, within: Duration) {
    let deadline = Instant::now() + within;
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "{addr} never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// (blob hex, chunk index) -> shard index -> nonce of the verified file (None: fails its checks).
type ShardMap = BTreeMap<(String, u32), BTreeMap<u8, Option<[u8; 12]>>>;

struct Cluster {
    root: PathBuf,
    node_addrs: Vec<SocketAddr>,
    /// Nodes `storage..` host the key service only (the gateway does not store shards there).
    storage: usize,
    nodes: Vec<Option<Proc>>,
    _gateway: Option<Proc>,
    endpoint: String,
}

impl Cluster {
    fn ca(root: &Path) {
        strata(&["cluster", "init", s(&root.join("ca"))]);
    }

    fn issue(root: &Path, name: &str) -> PathBuf {
        let out = root.join("certs").join(name);
        strata(&[
            "cluster",
            "issue",
            "--ca",
            s(&root.join("ca")),
            "--name",
            name,
            "--out",
            s(&out),
            "--san",
            "127.0.0.1",
        ]);
        out
    }

    fn start_node(root: &Path, i: usize, addr: SocketAddr, key_service: bool) -> Proc {
        let name = format!("n{i}");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(root.join(format!("{name}.log")))
            .unwrap();
        let child = Command::new(BIN)
            .args([
                "node",
                "--data-dir",
                s(&root.join(format!("data-{name}"))),
                "--listen",
                &addr.to_string(),
                "--disks",
                "1",
                "--cluster",
                s(&root.join("certs").join(&name)),
                "--node-id",
                &name,
            ])
            .args(key_service.then_some("--key-service"))
            .env("STRATA_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        wait_port(addr, Duration::from_secs(20));
        Proc(child)
    }

    /// Every replica of the cluster's destruction log signs with one key (docs/cluster.md): the
    /// first key node's, copied before another key node's first start.
    fn share_log_key(root: &Path, from: usize, to: usize) {
        use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
        let src = root.join(format!("data-n{from}/destruction-log/log-key.pem"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::fs::metadata(&src).map_or(true, |m| m.len() == 0) {
            assert!(
                Instant::now() < deadline,
                "{} never appeared",
                src.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let dir = root.join(format!("data-n{to}/destruction-log"));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .unwrap();
        let dst = dir.join("log-key.pem");
        std::fs::copy(&src, &dst).unwrap();
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    fn start(root: &Path, count: usize) -> Cluster {
        Self::start_with(root, count, 0, Vec::new())
    }

    /// `storage` storage nodes, then `key_nodes` nodes hosting only the key service (so a
    /// killed key node holds no shard, and a destruction does not wait for it), and
    /// `gateway_extra` on the gateway's command line.
    fn start_with(
        root: &Path,
        storage: usize,
        key_nodes: usize,
        gateway_extra: Vec<String>,
    ) -> Cluster {
        Self::ca(root);
        let count = storage + key_nodes;
        let node_addrs: Vec<SocketAddr> = (0..count)
            .map(|_| format!("127.0.0.1:{}", free_port()).parse().unwrap())
            .collect();
        let mut nodes = Vec::new();
        for (i, addr) in node_addrs.iter().enumerate() {
            Self::issue(root, &format!("n{i}"));
            if i > storage {
                Self::share_log_key(root, storage, i);
            }
            nodes.push(Some(Self::start_node(root, i, *addr, i >= storage)));
        }
        let gw = Self::issue(root, "gw");
        let port = free_port();
        let mut args = vec![
            "gateway".to_string(),
            "--data-dir".into(),
            s(&root.join("gateway")).into(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--cluster".into(),
            s(&gw).into(),
            "--chunk-size".into(),
            (128 * 1024).to_string(),
            "--rebuild-rate".into(),
            "256".into(),
            "--rebalance-rate".into(),
            "0".into(),
        ];
        for a in &node_addrs[..storage] {
            args.push("--node".into());
            args.push(a.to_string());
        }
        for a in &node_addrs[storage..] {
            args.push("--key-service".into());
            args.push(a.to_string());
        }
        args.extend(gateway_extra);
        let log = std::fs::File::create(root.join("gateway.log")).unwrap();
        let child = Command::new(BIN)
            .args(&args)
            .env("STRATA_ADMIN_ACCESS_KEY", AK)
            .env("STRATA_ADMIN_SECRET_KEY", SK)
            .env("STRATA_MASTER_KEY", "11".repeat(32))
            .env("STRATA_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let gateway = Proc(child);
        wait_port(
            format!("127.0.0.1:{port}").parse().unwrap(),
            Duration::from_secs(60),
        );
        Cluster {
            root: root.to_path_buf(),
            node_addrs,
            storage,
            nodes,
            _gateway: Some(gateway),
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    fn kill9(&mut self, i: usize) {
        let mut p = self.nodes[i].take().expect("running");
        let pid = p.0.id().to_string();
        let st = Command::new("kill").args(["-9", &pid]).status().unwrap();
        assert!(st.success());
        let _ = p.0.wait();
        std::mem::forget(p);
    }

    fn restart_empty(&mut self, i: usize) {
        let dir = self.root.join(format!("data-n{i}"));
        std::fs::remove_dir_all(&dir).unwrap();
        self.restart(i);
    }

    /// Starts node `i` again on its data dir and address.
    fn restart(&mut self, i: usize) {
        self.nodes[i] = Some(Self::start_node(
            &self.root,
            i,
            self.node_addrs[i],
            i >= self.storage,
        ));
    }

    /// `strata admin ARGS` against the gateway, as the admin.
    fn admin(&self, args: &[&str]) -> std::process::Output {
        Command::new(BIN)
            .args(["admin", "--endpoint", &self.endpoint])
            .args(args)
            .env("STRATA_ACCESS_KEY", AK)
            .env("STRATA_SECRET_KEY", SK)
            .output()
            .unwrap()
    }

    fn rebuild_status(&self) -> serde_json::Value {
        let o = Command::new(BIN)
            .args([
                "admin",
                "--endpoint",
                &self.endpoint,
                "--json",
                "rebuild",
                "status",
            ])
            .env("STRATA_ACCESS_KEY", AK)
            .env("STRATA_SECRET_KEY", SK)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    }

    /// Every shard file on every node, by chunk: (blob hex, index) -> shard index -> verified
    /// header's nonce (None if the file fails verification).
    fn shards(&self) -> ShardMap {
        let mut out = ShardMap::new();
        for i in 0..self.node_addrs.len() {
            let shards = self.root.join(format!("data-n{i}/disks/disk0/shards"));
            for f in walk(&shards) {
                let name = f.file_name().unwrap().to_str().unwrap().to_owned();
                let parts: Vec<&str> = name.split('.').collect();
                assert_eq!(parts.len(), 3, "unexpected file {name}");
                let bytes = std::fs::read(&f).unwrap();
                let verified = strata_storage_node::format::verify_shard(&bytes)
                    .ok()
                    .map(|(h, _)| h.nonce);
                let shard: u8 = parts[2].parse().unwrap();
                let prev = out
                    .entry((parts[0].to_owned(), parts[1].parse().unwrap()))
                    .or_default()
                    .insert(shard, verified);
                assert!(prev.is_none(), "shard {name} stored twice");
            }
        }
        out
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A minimal SigV4-signed S3 client (path style).
#[derive(Clone)]
struct S3 {
    endpoint: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl S3 {
    fn new(endpoint: &str) -> Self {
        S3 {
            endpoint: endpoint.to_owned(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    async fn call(&self, method: &str, path: &str, body: Bytes) -> (u16, Bytes) {
        let url = format!("{}{}", self.endpoint, path);
        let uri: http::Uri = url.parse().unwrap();
        let host = uri.authority().unwrap().to_string();
        let hash = hex::encode(Sha256::digest(&body));
        let headers = vec![
            ("host".to_string(), host),
            ("x-amz-content-sha256".to_string(), hash.clone()),
        ];
        let identity: Identity = Credentials::new(AK, SK, None, None, "test").into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("s3")
            .time(std::time::SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let signable = SignableRequest::new(
            method,
            &url,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Precomputed(hash),
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        let mut req = http::Request::builder().method(method).uri(uri);
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        let mut req = req.body(Full::new(body)).unwrap();
        instructions.apply_to_request_http1x(&mut req);
        let resp = tokio::time::timeout(Duration::from_secs(30), self.client.request(req))
            .await
            .expect("S3 request within 30 s")
            .expect("gateway answers");
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, bytes)
    }
}

fn object(i: u64, len: usize) -> Bytes {
    let mut state = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    Bytes::from(
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect::<Vec<u8>>(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_refuses_clients_without_a_cluster_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    Cluster::ca(root);
    Cluster::issue(root, "n0");
    let good = Cluster::issue(root, "gw");
    // Another cluster's CA and certificate.
    let other = root.join("other");
    strata(&["cluster", "init", s(&other.join("ca"))]);
    strata(&[
        "cluster",
        "issue",
        "--ca",
        s(&other.join("ca")),
        "--name",
        "intruder",
        "--out",
        s(&other.join("intruder")),
    ]);
    // The intruder trusts the cluster's CA (so it accepts the node) but its own certificate
    // is from the other CA: only the node's client verification can stop it.
    std::fs::remove_file(other.join("intruder/ca.pem")).unwrap();
    std::fs::copy(root.join("ca/ca.pem"), other.join("intruder/ca.pem")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(root.join("ca/ca.key")), 0o600);
        assert_eq!(mode(good.join("key.pem")), 0o600);
    }
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _node = Cluster::start_node(root, 0, addr, false);

    let ask = |dir: PathBuf| async move {
        let tls = strata_storage_node::tls::ClusterTls::load(&dir).unwrap();
        let peers = strata_storage_node::shards::Peers::new(tls, Default::default());
        peers
            .get(addr)
            .request(http::Method::GET, "/node/info", &[], Bytes::new())
            .await
    };
    // With the cluster's certificate: the node answers.
    let info = ask(good).await.expect("a cluster certificate is accepted");
    let info: serde_json::Value = serde_json::from_slice(info.body()).unwrap();
    assert_eq!(info["node_id"], "n0");
    // Another CA's certificate: refused in the handshake.
    assert!(ask(other.join("intruder")).await.is_err());

    // No client certificate at all (but trusting the cluster CA): refused.
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(root.join("ca/ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let refused = async {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut tls = connector
            .connect(strata_storage_node::tls::server_name(addr.ip()), tcp)
            .await?;
        // TLS 1.3: the server's refusal arrives with the first read.
        tls.write_all(b"GET /node/info HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await?;
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let outcome = tokio::time::timeout(Duration::from_secs(10), refused)
        .await
        .unwrap();
    assert!(
        outcome.is_err() || outcome.as_ref().is_ok_and(|b| b.is_empty()),
        "a client without a certificate got an answer: {:?}",
        outcome.map(|b| String::from_utf8_lossy(&b).into_owned())
    );

    // Plain HTTP: no answer either.
    let plain = S3::new(&format!("http://{addr}"));
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        plain.client.request(
            http::Request::get(format!("http://{addr}/node/info"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        ),
    )
    .await
    .unwrap();
    assert!(r.is_err(), "plain HTTP got an answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_killed_under_load_then_rebuilt_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(tmp.path(), 6);
    let s3 = S3::new(&cluster.endpoint);
    assert_eq!(s3.call("PUT", "/cluster", Bytes::new()).await.0, 200);
    // Objects of 1..5 chunks (128 KiB chunks) written while every node is up.
    let mut written: Vec<(String, Bytes)> = Vec::new();
    for i in 0..12u64 {
        let body = object(i, 40_000 + (i as usize) * 47_000);
        let key = format!("/cluster/before-{i}");
        assert_eq!(s3.call("PUT", &key, body.clone()).await.0, 200);
        written.push((key, body));
    }
    let before = cluster.shards();
    assert!(before.values().all(|s| s.len() == 6), "full redundancy");

    // Mixed load, bounded in count and time; node 2 is killed while it runs.
    let stop_at = Instant::now() + Duration::from_secs(6);
    let (puts, gets, failures) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let shared = Arc::new(written.clone());
    let mut tasks = Vec::new();
    for w in 0..3u64 {
        let (s3, shared) = (s3.clone(), shared.clone());
        let (puts, gets, failures) = (puts.clone(), gets.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for n in 0..2000u64 {
                if Instant::now() > stop_at {
                    break;
                }
                if n % 2 == 0 {
                    let id = 1000 + w * 10_000 + n;
                    let body = object(id, 30_000 + (n as usize % 5) * 60_000);
                    let key = format!("/cluster/load-{id}");
                    let (status, text) = s3.call("PUT", &key, body.clone()).await;
                    if status == 200 {
                        puts.fetch_add(1, Ordering::Relaxed);
                        mine.push((key, body));
                    } else {
                        failures.fetch_add(1, Ordering::Relaxed);
                        eprintln!("PUT {key}: {status} {}", String::from_utf8_lossy(&text));
                    }
                } else {
                    let (key, body) = &shared[(n as usize / 2 + w as usize) % shared.len()];
                    let (status, got) = s3.call("GET", key, Bytes::new()).await;
                    if status == 200 && got == *body {
                        gets.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failures.fetch_add(1, Ordering::Relaxed);
                        eprintln!("GET {key}: {status}, {} bytes", got.len());
                    }
                }
            }
            mine
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.kill9(2);
    let mut during = Vec::new();
    for t in tasks {
        during.extend(t.await.unwrap());
    }
    let puts_done = puts.load(Ordering::Relaxed);
    let gets_done = gets.load(Ordering::Relaxed);
    eprintln!("load: {puts_done} PUTs, {gets_done} GETs");
    assert_eq!(failures.load(Ordering::Relaxed), 0, "no request failed");
    assert!(puts_done >= 6 && gets_done >= 6, "the load ran");

    // PUTs after the kill are degraded and recorded; the rebuild cannot finish yet.
    let mut after = Vec::new();
    for i in 0..6u64 {
        let body = object(50_000 + i, 300_000);
        let key = format!("/cluster/after-{i}");
        assert_eq!(s3.call("PUT", &key, body.clone()).await.0, 200);
        after.push((key, body));
    }
    let st = cluster.rebuild_status();
    assert!(
        st["status"]["degraded_chunks_pending"].as_u64().unwrap() > 0,
        "degraded writes are recorded: {st}"
    );
    for (key, body) in written.iter().chain(&during).chain(&after) {
        let (status, got) = s3.call("GET", key, Bytes::new()).await;
        assert_eq!(status, 200, "degraded GET {key}");
        assert!(got == *body, "degraded GET {key}: bytes differ");
    }

    // Back, empty (the operator step: same --node-id, new disk): the rebuild restores it.
    cluster.restart_empty(2);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let st = cluster.rebuild_status();
        let s = &st["status"];
        let done = s["degraded_chunks_pending"] == 0
            && s["disks_pending"].as_array().is_some_and(Vec::is_empty)
            && s["chunks_rebuilt"].as_u64().unwrap_or(0) > 0;
        if done {
            eprintln!("rebuild: {st}");
            break;
        }
        assert!(Instant::now() < deadline, "rebuild did not finish: {st}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let shards = cluster.shards();
    for (chunk, set) in &shards {
        assert_eq!(set.len(), 6, "chunk {chunk:?} has shards {:?}", set.keys());
        let nonces: Vec<_> = set.values().collect();
        assert!(
            nonces.iter().all(|n| n.is_some() && *n == nonces[0]),
            "chunk {chunk:?}: every shard verifies and is of one write"
        );
    }
    assert!(shards.len() >= before.len());
    let on_n2 = walk(&cluster.root.join("data-n2/disks/disk0/shards")).len();
    assert!(on_n2 > 0, "the empty node got its shards back");
    for (key, body) in written.iter().chain(&during).chain(&after) {
        let (status, got) = s3.call("GET", key, Bytes::new()).await;
        assert_eq!(status, 200, "GET {key} after rebuild");
        assert!(got == *body, "GET {key}: bytes differ after rebuild");
    }
}

/// A key-service replica read directly, as one client of that node alone.
fn key_replica(root: &Path, addr: SocketAddr) -> strata_keystore::service::RemoteKeyStore {
    let tls = strata_storage_node::tls::ClusterTls::load(&root.join("certs").join("tester"))
        .expect("tester certificate");
    let client = strata_storage_node::key_client::KeyServiceClient::new(addr, tls).unwrap();
    strata_keystore::service::RemoteKeyStore::new(Box::new(client))
}

/// (slot, key id) of the data key of `bucket/key`'s current version.
fn dek_of(meta: &strata_metadata::MetaStore, bucket: &str, key: &str) -> (u64, [u8; 16]) {
    let v = meta.get_version(bucket, key, None).expect("version");
    let id: [u8; 16] = hex::decode(&v.data.dek_id).unwrap().try_into().unwrap();
    (v.data.dek_slot.expect("a data key"), id)
}

/// Kill -9 one of three key-service replicas under a mixed PUT/GET load: no request fails; a
/// version deleted (and its key destroyed) while the replica is down is not readable through
/// that replica once it is back (it serves nothing until it has applied its journal), and a key
/// written while it was down is served by it afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_service_replica_killed_under_load_catches_up_before_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let etcd = strata_metadata::etcd_server::EtcdCluster::start(&tmp.path().join("etcd"), 1)
        .expect("etcd starts");
    let url = etcd.url("keys-test/");
    let mut cluster = Cluster::start_with(
        tmp.path(),
        6,
        3,
        vec![
            "--meta".into(),
            url.clone(),
            "--gc-grace-ms".into(),
            "300".into(),
        ],
    );
    Cluster::issue(tmp.path(), "tester");
    let meta = strata_metadata::MetaStore::open_url(&url).unwrap();
    let s3 = S3::new(&cluster.endpoint);
    assert_eq!(s3.call("PUT", "/keys", Bytes::new()).await.0, 200);
    let mut written: Vec<(String, Bytes)> = Vec::new();
    for i in 0..8u64 {
        let body = object(70_000 + i, 20_000 + i as usize * 9_000);
        let key = format!("/keys/before-{i}");
        assert_eq!(s3.call("PUT", &key, body.clone()).await.0, 200);
        written.push((key, body));
    }
    assert_eq!(s3.call("PUT", "/keys/doomed", object(1, 5000)).await.0, 200);
    let (slot, id) = dek_of(&meta, "keys", "doomed");
    // Key-service replicas: nodes 6, 7 and 8 (each with a replica of the destruction log); 7
    // is killed.
    let k1 = cluster.node_addrs[7];
    let root = tmp.path().to_path_buf();
    let through_k1 = move |slot: u64| {
        let root = root.clone();
        async move {
            tokio::task::spawn_blocking(move || key_replica(&root, k1).read(slot))
                .await
                .unwrap()
        }
    };
    match through_k1(slot).await {
        Ok(strata_keystore::Slot::Live(e)) => assert_eq!(e.id, id),
        other => panic!("the key is on replica k1 before the kill: {other:?}"),
    }

    // Mixed load for 5 s; replica k1 is killed 1.5 s in.
    let stop_at = Instant::now() + Duration::from_secs(5);
    let (puts, gets, failures) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let shared = Arc::new(written.clone());
    let mut tasks = Vec::new();
    for w in 0..3u64 {
        let (s3, shared) = (s3.clone(), shared.clone());
        let (puts, gets, failures) = (puts.clone(), gets.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for n in 0..2000u64 {
                if Instant::now() > stop_at {
                    break;
                }
                if n % 2 == 0 {
                    let id = 80_000 + w * 10_000 + n;
                    let body = object(id, 10_000 + (n as usize % 4) * 30_000);
                    let key = format!("/keys/load-{id}");
                    let (status, text) = s3.call("PUT", &key, body.clone()).await;
                    if status == 200 {
                        puts.fetch_add(1, Ordering::Relaxed);
                        mine.push((key, body, Instant::now()));
                    } else {
                        failures.fetch_add(1, Ordering::Relaxed);
                        eprintln!("PUT {key}: {status} {}", String::from_utf8_lossy(&text));
                    }
                } else {
                    let (key, body) = &shared[(n as usize / 2 + w as usize) % shared.len()];
                    let (status, got) = s3.call("GET", key, Bytes::new()).await;
                    if status == 200 && got == *body {
                        gets.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failures.fetch_add(1, Ordering::Relaxed);
                        eprintln!("GET {key}: {status}, {} bytes", got.len());
                    }
                }
            }
            mine
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.kill9(7);
    let killed_at = Instant::now();
    let mut during = Vec::new();
    for t in tasks {
        during.extend(t.await.unwrap());
    }
    let (puts_done, gets_done) = (puts.load(Ordering::Relaxed), gets.load(Ordering::Relaxed));
    eprintln!("load: {puts_done} PUTs, {gets_done} GETs");
    assert_eq!(failures.load(Ordering::Relaxed), 0, "no request failed");
    assert!(puts_done >= 6 && gets_done >= 6, "the load ran");

    // While k1 is down: a version is deleted and its key destroyed (GC, 300 ms grace), and a
    // new object's key is written without k1.
    let (status, _) = s3.call("DELETE", "/keys/doomed", Bytes::new()).await;
    assert_eq!(status, 204);
    let k0 = key_replica(tmp.path(), cluster.node_addrs[6]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let k0 = Arc::new(k0);
    loop {
        let r = k0.clone();
        let s = tokio::task::spawn_blocking(move || r.read(slot))
            .await
            .unwrap()
            .unwrap();
        if matches!(s, strata_keystore::Slot::Destroyed { .. }) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the key was never destroyed: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let late = object(2, 7000);
    assert_eq!(s3.call("PUT", "/keys/late", late.clone()).await.0, 200);
    let (late_slot, late_id) = dek_of(&meta, "keys", "late");
    let (written_slot, _) = {
        let (key, _, _) = during
            .iter()
            .rev()
            .find(|(_, _, at)| *at > killed_at + Duration::from_millis(500))
            .expect("a PUT after the kill");
        dek_of(&meta, "keys", key.trim_start_matches("/keys/"))
    };

    // k1 back on its data (which still holds the destroyed key): it answers no read until it
    // has applied its journal, and then the key reads as destroyed.
    cluster.restart(7);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut refused = 0;
    loop {
        match through_k1(slot).await {
            Ok(strata_keystore::Slot::Destroyed { .. }) => break,
            Ok(other) => panic!("replica k1 served the destroyed key's slot as {other:?}"),
            Err(_) => refused += 1,
        }
        assert!(Instant::now() < deadline, "replica k1 never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("replica k1: {refused} reads refused while catching up");
    // It serves again, with the keys written while it was away.
    match through_k1(late_slot).await {
        Ok(strata_keystore::Slot::Live(e)) => assert_eq!(e.id, late_id),
        other => panic!("replica k1 lacks a key written while it was down: {other:?}"),
    }
    assert!(matches!(
        through_k1(written_slot).await,
        Ok(strata_keystore::Slot::Live(_))
    ));
    let (status, _) = s3.call("GET", "/keys/doomed", Bytes::new()).await;
    assert_eq!(status, 404);
    let mut all = written.clone();
    all.extend(during.into_iter().map(|(k, b, _)| (k, b)));
    all.push(("/keys/late".into(), late));
    for (key, body) in &all {
        let (status, got) = s3.call("GET", key, Bytes::new()).await;
        assert_eq!(status, 200, "GET {key} after the replica's return");
        assert!(got == *body, "GET {key}: bytes differ");
    }
    drop(etcd);
}

/// The destruction log is replicated on the three key nodes: with the first one killed (kill
/// -9), a destroyed version's record is appended on the two others (a majority), and an export
/// through the gateway holds it and verifies with the log's key (read from another node); the
/// node, restarted on its data, catches up to the very same files (records and signed
/// checkpoints) as the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destruction_log_replica_killed_the_others_record_and_it_catches_up() {
    let tmp = tempfile::tempdir().unwrap();
    let etcd = strata_metadata::etcd_server::EtcdCluster::start(&tmp.path().join("etcd"), 1)
        .expect("etcd starts");
    let url = etcd.url("dlog-test/");
    let mut cluster = Cluster::start_with(
        tmp.path(),
        6,
        3,
        vec![
            "--meta".into(),
            url.clone(),
            "--gc-grace-ms".into(),
            "300".into(),
        ],
    );
    let s3 = S3::new(&cluster.endpoint);
    assert_eq!(s3.call("PUT", "/dlog", Bytes::new()).await.0, 200);
    for k in ["kept", "first", "gone"] {
        assert_eq!(
            s3.call("PUT", &format!("/dlog/{k}"), object(3, 4000))
                .await
                .0,
            200
        );
    }
    // One destruction with every replica up (a checkpoint follows with the first export).
    assert_eq!(s3.call("DELETE", "/dlog/first", Bytes::new()).await.0, 204);
    let shown = |c: &Cluster, key: &str| {
        let o = c.admin(&["--json", "destruction", "show", "dlog", key]);
        o.status.success()
            && serde_json::from_slice::<serde_json::Value>(&o.stdout)
                .is_ok_and(|v| v.as_array().is_some_and(|a| !a.is_empty()))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !shown(&cluster, "first") {
        assert!(
            Instant::now() < deadline,
            "no record of the first destruction"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out0 = tmp.path().join("export-0");
    let o = cluster.admin(&["--json", "destruction", "export", s(&out0)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    cluster.kill9(6);
    assert_eq!(s3.call("DELETE", "/dlog/gone", Bytes::new()).await.0, 204);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !shown(&cluster, "gone") {
        assert!(
            Instant::now() < deadline,
            "no record while the first key node is down"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let o = Command::new(BIN)
        .args(["admin", "destruction", "public-key", "--data-dir"])
        .arg(tmp.path().join("data-n7"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let pub_pem = tmp.path().join("log.pub.pem");
    std::fs::write(&pub_pem, &o.stdout).unwrap();
    let out = tmp.path().join("export-1");
    let o = cluster.admin(&[
        "--json",
        "destruction",
        "export",
        s(&out),
        "--bucket",
        "dlog",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let recs = std::fs::read_to_string(out.join("records.jsonl")).unwrap();
    let keys: Vec<String> = recs
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["record"]["key"].to_string())
        .collect();
    assert_eq!(keys, vec!["\"first\"", "\"gone\""]);
    for dir in [&out0, &out] {
        let v = Command::new(BIN)
            .args([
                "admin",
                "destruction",
                "verify",
                s(dir),
                "--public-key",
                s(&pub_pem),
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&v.stdout);
        assert!(v.status.success() && text.starts_with("OK: "), "{text}");
    }

    // The first key node returns on its data dir and catches up from the others.
    cluster.restart(6);
    let files = |i: usize| {
        let d = tmp.path().join(format!("data-n{i}/destruction-log"));
        [
            std::fs::read(d.join("records.log")).unwrap_or_default(),
            std::fs::read(d.join("checkpoints.log")).unwrap_or_default(),
        ]
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (a, b, c) = (files(6), files(7), files(8));
        if a == b && b == c {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the returning replica did not catch up: {} / {} record bytes",
            a[0].len(),
            b[0].len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        !files(6)[1].is_empty(),
        "the checkpoints made while it was down are there"
    );
    drop(etcd);
}
