//! The operator API: `POST /?x-strata-admin=VERB` with a JSON body, signed with SigV4 like any S3
//! request (s3s verifies the signature; SigV2, which would not sign the verb, is refused here and at the edge) and
//! allowed only to admin users. The `strata admin` CLI is its client.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::{HeaderMap, Method, Uri};
use http_body_util::BodyExt;
use s3s::route::S3Route;
use s3s::{Body, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth;
use crate::context::Context;
use crate::errors;

mod audit;
mod keys;
mod lifecycle;
mod migration;
mod usage;

pub const ADMIN_QUERY: &str = "x-strata-admin";
/// Admin request bodies are small JSON documents.
const MAX_ADMIN_BODY: usize = 64 * 1024;

/// Operations that need the local chunk store (only in processes that host one).
#[async_trait::async_trait]
pub trait NodeAdmin: Send + Sync + 'static {
    async fn scrub(&self, repair: bool) -> anyhow::Result<Value>;
    /// The local disks as the operator sees them (`disk-status`): name, directory, used fraction,
    /// the write high-water mark, whether the directory answers.
    async fn disks(&self) -> anyhow::Result<Value> {
        Ok(Value::Array(Vec::new()))
    }
}

pub struct AdminRoute {
    pub ctx: Arc<Context>,
    pub node: Option<Arc<dyn NodeAdmin>>,
    /// The same counters `/_strata/metrics` serves (`strata admin metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
}

fn verb(uri: &Uri) -> Option<String> {
    uri.query()?.split('&').find_map(|p| {
        p.strip_prefix(ADMIN_QUERY)
            .and_then(|r| r.strip_prefix('='))
            .map(str::to_string)
    })
}

/// An operator's bad input: `InvalidArgument` with what was wrong (shared by the verb modules).
pub(crate) fn bad(msg: impl Into<String>) -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidArgument, msg.into())
}

#[derive(Deserialize, Default)]
struct Args {
    name: Option<String>,
    user: Option<String>,
    access_key: Option<String>,
    dir: Option<String>,
    #[serde(default)]
    repair: bool,
    tranquility: Option<u32>,
    /// user-remove: close the account (grace period, then destruction) instead of removing
    /// the user record alone.
    #[serde(default)]
    purge: bool,
    grace_days: Option<u32>,
}

fn valid_user_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
}

#[async_trait::async_trait]
impl S3Route for AdminRoute {
    fn is_match(
        &self,
        method: &Method,
        uri: &Uri,
        _headers: &HeaderMap,
        _ext: &mut http::Extensions,
    ) -> bool {
        method == Method::POST && uri.path() == "/" && verb(uri).is_some()
    }

    /// Runs once s3s verified the signature: SigV4 only (the front refuses SigV2 already; this
    /// keeps the operator API safe should that ever change), and the failed-signature lockout.
    async fn check_access(&self, req: &mut S3Request<Body>) -> S3Result<()> {
        let query = crate::http::signed_headers::query_pairs(req.uri.query());
        if crate::http::signed_headers::is_sigv2(&req.headers, &query) {
            return Err(s3_error!(
                InvalidRequest,
                "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256."
            ));
        }
        let key = req.credentials.as_ref().map(|c| c.access_key.as_str());
        crate::http::lockout::check_verified(&req.extensions, key)
    }

    async fn call(&self, req: S3Request<Body>) -> S3Result<S3Response<Body>> {
        let who = auth::caller(&self.ctx.engine, &req.credentials).await?;
        if !who.is_admin {
            tracing::warn!(target: "strata::security", user = %who.user, "admin API refused: not an admin");
            return Err(s3_error!(AccessDenied));
        }
        let verb = verb(&req.uri).unwrap_or_default();
        let body = http_body_util::Limited::new(req.input, MAX_ADMIN_BODY)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    s3_error!(MaxMessageLengthExceeded)
                } else {
                    s3_error!(IncompleteBody)
                }
            })?
            .to_bytes();
        let raw: Value = if body.is_empty() {
            json!({})
        } else {
            serde_json::from_slice(&body).map_err(|e| bad(format!("bad JSON: {e}")))?
        };
        let engine = &self.ctx.engine;
        if let Some(out) = lifecycle::handle(engine, &verb, &body).await {
            return json_response(out?);
        }
        if let Some(r) = audit::handle(engine, &who, &verb, &raw).await {
            return json_response(r?);
        }
        if let Some(r) = migration::handle(engine, &who, &verb, &raw).await {
            return json_response(r?);
        }
        if let Some(r) = keys::handle(engine, &who, &verb, &raw).await {
            return json_response(r?);
        }
        if let Some(r) = usage::handle(engine, &verb, &raw).await {
            return json_response(r?);
        }
        let args: Args = serde_json::from_value(raw).map_err(|e| bad(format!("bad JSON: {e}")))?;
        let out: Value = match verb.as_str() {
            "metrics" => {
                json!({"prometheus": self.metrics.render() + &self.metrics.render_engine().await + &self.metrics.render_usage(true).await})
            }
            "user-add" => {
                let name = args.name.ok_or_else(|| bad("name is required"))?;
                if !valid_user_name(&name) {
                    return Err(bad("user names are 1-64 characters of A-Z a-z 0-9 - _ . @"));
                }
                if name == strata_metadata::users::ANONYMOUS {
                    return Err(bad(
                        "the user name \"anonymous\" is reserved: the audit log names unsigned requests' caller so",
                    ));
                }
                let (ak, sk) = engine
                    .create_user(&name, false, None)
                    .await
                    .map_err(errors::engine)?;
                tracing::info!(target: "strata::audit", admin = %who.user, user = %name, access_key = %ak, "user created");
                json!({"user": name, "access_key": ak, "secret_key": sk})
            }
            "user-list" => {
                let keys = engine.list_access_keys().await.map_err(errors::engine)?;
                let users = engine.list_users().await.map_err(errors::engine)?;
                Value::Array(
                    users
                        .into_iter()
                        .map(|u| {
                            let mine: Vec<Value> = keys
                                .iter()
                                .filter(|k| k.user == u.id)
                                .map(|k| json!({"access_key": k.access_key, "revoked": k.revoked, "created": k.created}))
                                .collect();
                            json!({"user": u.name, "id": u.id, "is_admin": u.is_admin, "created": u.created, "keys": mine})
                        })
                        .collect(),
                )
            }
            "user-remove" => {
                let name = args.name.ok_or_else(|| bad("name is required"))?;
                let u = engine
                    .list_users()
                    .await
                    .map_err(errors::engine)?
                    .into_iter()
                    .find(|u| u.name == name)
                    .ok_or_else(|| bad("no such user"))?;
                if u.is_admin {
                    return Err(bad("the admin user cannot be removed"));
                }
                if args.purge {
                    let days = args
                        .grace_days
                        .unwrap_or(strata_engine::purge::DEFAULT_GRACE_DAYS);
                    let out = engine
                        .close_account(&name, days, &who.id)
                        .await
                        .map_err(|e| bad(e.to_string()))?;
                    tracing::info!(target: "strata::audit", admin = %who.user, user = %name, grace_days = days, "account closure requested");
                    out
                } else {
                    engine.delete_user(&name).await.map_err(errors::engine)?;
                    tracing::info!(target: "strata::audit", admin = %who.user, user = %name, "user removed");
                    json!({"removed": name})
                }
            }
            "key-create" => {
                let user = args.user.ok_or_else(|| bad("user is required"))?;
                let (ak, sk) = engine
                    .add_access_key(&user, None)
                    .await
                    .map_err(|e| match e {
                        strata_engine::EngineError::Meta(
                            strata_metadata::MetaError::NoSuchUser,
                        ) => bad("no such user"),
                        e => errors::engine(e),
                    })?;
                tracing::info!(target: "strata::audit", admin = %who.user, user = %user, access_key = %ak, "access key created");
                json!({"user": user, "access_key": ak, "secret_key": sk})
            }
            "key-revoke" => {
                let ak = args
                    .access_key
                    .ok_or_else(|| bad("access_key is required"))?;
                engine.revoke_access_key(&ak).await.map_err(|e| match e {
                    strata_engine::EngineError::Meta(strata_metadata::MetaError::NoSuchUser) => {
                        bad("no such access key")
                    }
                    e => errors::engine(e),
                })?;
                tracing::info!(target: "strata::audit", admin = %who.user, access_key = %ak, "access key revoked");
                json!({"revoked": ak})
            }
            "backup" => {
                let dir = PathBuf::from(args.dir.ok_or_else(|| bad("dir is required"))?);
                let started = std::time::Instant::now();
                let d = dir.clone();
                let e = engine.clone();
                tokio::task::spawn_blocking(move || private_backup(&e, &d))
                    .await
                    .map_err(|_| s3_error!(InternalError))?
                    .map_err(|e| bad(format!("backup failed: {e}")))?;
                tracing::info!(target: "strata::audit", admin = %who.user, dir = %dir.display(), "metadata backup taken");
                json!({"backup": dir, "millis": started.elapsed().as_millis() as u64})
            }
            "kms-create" => {
                let name = args.name.ok_or_else(|| bad("name is required"))?;
                let k = engine.create_kms_key(&name).await.map_err(|e| match e {
                    strata_engine::EngineError::Meta(strata_metadata::MetaError::AlreadyExists) => {
                        bad(format!("a KMS key named {name:?} exists"))
                    }
                    strata_engine::EngineError::Meta(strata_metadata::MetaError::Invalid(m)) => {
                        bad(m)
                    }
                    e => errors::engine(e),
                })?;
                tracing::info!(target: "strata::audit", admin = %who.user, kms_key = %k.id, name = %name, "KMS key created");
                kms_json(&k, &self.ctx.cfg.region)
            }
            "kms-list" => Value::Array(
                engine
                    .list_kms_keys()
                    .await
                    .map_err(errors::engine)?
                    .iter()
                    .map(|k| kms_json(k, &self.ctx.cfg.region))
                    .collect(),
            ),
            v @ ("kms-disable" | "kms-enable") => {
                let name = args.name.ok_or_else(|| bad("name is required"))?;
                let enable = v == "kms-enable";
                let k = engine
                    .set_kms_key_enabled(&name, enable)
                    .await
                    .map_err(|e| match e {
                        strata_engine::EngineError::Rejected(
                            strata_engine::Rejection::KmsKeyNotFound(_),
                        ) => bad(format!("no KMS key {name:?}")),
                        e => errors::engine(e),
                    })?;
                tracing::info!(target: "strata::audit", admin = %who.user, kms_key = %k.id, enabled = enable, "KMS key state changed");
                kms_json(&k, &self.ctx.cfg.region)
            }
            "rebuild-status" => {
                let worker = engine
                    .workers()
                    .list()
                    .into_iter()
                    .find(|w| w.name == "rebuild");
                let nodes = engine
                    .meta_call(|m| m.list_nodes())
                    .await
                    .map_err(|_| s3_error!(InternalError))?;
                json!({
                    "running": worker.is_some(),
                    "state": worker.as_ref().map(|w| w.state),
                    "errors": worker.as_ref().map(|w| w.errors),
                    "status": worker.map(|w| w.status),
                    "nodes": nodes.iter().map(|n| json!({
                        "id": n.id, "address": n.address, "state": n.state,
                        "disks": n.disks.len(), "last_seen": n.last_seen,
                    })).collect::<Vec<_>>(),
                })
            }
            "disk-status" => match &self.node {
                None => {
                    json!({"disks": [], "note": "this process hosts no chunk store: see rebuild-status for the storage nodes"})
                }
                Some(node) => json!({"disks": node.disks().await.map_err(|e| {
                    tracing::error!(error = %e, "disk status failed");
                    s3_error!(InternalError)
                })?}),
            },
            "worker-list" => serde_json::to_value(engine.workers().list())
                .map_err(|_| s3_error!(InternalError))?,
            "worker-set" => {
                let name = args.name.ok_or_else(|| bad("name is required"))?;
                let t = args
                    .tranquility
                    .ok_or_else(|| bad("tranquility is required"))?;
                if !engine.workers().set_tranquility(&name, t) {
                    return Err(bad(format!("no worker named {name:?}")));
                }
                tracing::info!(target: "strata::audit", admin = %who.user, worker = %name, tranquility = t, "worker tuned");
                json!({"worker": name, "tranquility": t})
            }
            "scrub" => {
                let node = self
                    .node
                    .as_ref()
                    .ok_or_else(|| bad("this process hosts no chunk store"))?;
                let report = node.scrub(args.repair).await.map_err(|e| {
                    tracing::error!(error = %e, "scrub failed");
                    s3_error!(InternalError)
                })?;
                tracing::info!(target: "strata::audit", admin = %who.user, repair = args.repair, "scrub run");
                report
            }
            _ => return Err(bad(format!("unknown admin verb {verb:?}"))),
        };
        json_response(out)
    }
}

/// A KMS key as the operator sees it (never key material).
fn kms_json(k: &strata_metadata::KmsKeyRecord, region: &str) -> Value {
    json!({
        "id": k.id,
        "name": k.name,
        "arn": strata_engine::kms::kms_key_arn(region, &k.id),
        "created": k.created,
        "enabled": k.enabled,
        "disabled_at": k.disabled_at,
    })
}

fn json_response(out: Value) -> S3Result<S3Response<Body>> {
    let mut resp = S3Response::new(Body::from(out.to_string()));
    resp.headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// Takes a backup into `dir`: `dir/meta` (the metadata checkpoint) and `dir/keys` (a copy of the
/// key store), consistent with each other: destroys and re-wraps in the key store wait while both
/// are taken, so every key the checkpoint references is in the copy. Written with the data
/// directory's permissions: directories 0700, files 0600 (sealed secrets, wrapped keys).
///
/// RocksDB creates the checkpoint directory itself (it must not exist) with the process umask,
/// so fixing modes afterwards in place would leave a window in which other local users can open
/// the files. Instead the checkpoint is made inside a fresh 0700 staging directory next to `dir`
/// (nobody else can enter it), its modes are fixed there, and it is renamed to `dir` (same file
/// system, atomic). The SST files are hard links to the live store's, which the data directory
/// already keeps private; making them 0600 changes nothing for the server.
fn private_backup(engine: &strata_engine::Engine, dir: &Path) -> Result<(), String> {
    let meta = engine.meta_blocking();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        let exists = |p: &Path| p.symlink_metadata().is_ok();
        if exists(dir) {
            return Err(format!("{} already exists", dir.display()));
        }
        let name = dir
            .file_name()
            .ok_or_else(|| format!("{} has no final component", dir.display()))?;
        let parent = dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let staging = parent.join(format!(
            ".{}.staging-{:016x}",
            name.to_string_lossy(),
            rand::random::<u64>()
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&staging)
            .map_err(|e| format!("cannot create {}: {e}", staging.display()))?;
        let snapshot = staging.join("snapshot");
        let result = (|| {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&snapshot)
                .map_err(|e| format!("cannot create {}: {e}", snapshot.display()))?;
            {
                let paused = engine.keys().store().pause_overwrites().ok_or_else(|| {
                    "the key store is the cluster's key service: back it up on its node".to_string()
                })?;
                meta.backup(&snapshot.join("meta"))
                    .map_err(|e| e.to_string())?;
                paused
                    .copy_to(&snapshot.join("keys"))
                    .map_err(|e| format!("copying the key store: {e}"))?;
            }
            restrict_tree(&snapshot).map_err(|e| format!("cannot restrict permissions: {e}"))?;
            if exists(dir) {
                return Err(format!("{} already exists", dir.display()));
            }
            std::fs::rename(&snapshot, dir)
                .map_err(|e| format!("cannot move the backup into place: {e}"))?;
            std::fs::File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(|e| format!("cannot sync {}: {e}", parent.display()))
        })();
        let _ = std::fs::remove_dir_all(&staging);
        result
    }
    #[cfg(not(unix))]
    {
        let _ = (meta, dir);
        Err("backups need a Unix system".into())
    }
}

/// Directories 0700, files 0600, below and including `dir` (symlinks are left alone).
#[cfg(unix)]
fn restrict_tree(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let ft = entry.file_type()?;
        if ft.is_dir() {
            restrict_tree(&entry.path())?;
        } else if ft.is_file() {
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    fn engine(dir: &Path) -> strata_engine::Engine {
        let meta = strata_metadata::MetaStore::open(&dir.join("meta")).unwrap();
        let store = strata_storage_node::LocalChunkStore::open(
            strata_storage_node::NodeConfig::under(&dir.join("disks"), 6),
        )
        .unwrap();
        let disks: Vec<String> = (0..6).map(|i| format!("disk{i}")).collect();
        let layout = meta
            .ensure_current_layout(&disks, 4, 2, 1 << 20, 0)
            .unwrap();
        strata_engine::Engine::new(
            meta,
            Arc::new(store),
            strata_engine::keys::KeyRing::open_files(dir).unwrap(),
            Arc::new(
                strata_destruction_log::DestructionLog::open(&dir.join("destruction-log")).unwrap(),
            ),
            Default::default(),
            layout,
            "test".into(),
        )
        .unwrap()
    }

    #[test]
    fn backup_is_private() {
        let tmp = tempfile::tempdir().unwrap();
        let engine = engine(tmp.path());
        let out = tmp.path().join("backups").join("b1");
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        private_backup(&engine, &out).unwrap();
        assert_eq!(mode(&out), 0o700);
        let mut files = 0;
        for sub in ["meta", "keys"] {
            assert_eq!(mode(&out.join(sub)), 0o700);
            for e in std::fs::read_dir(out.join(sub)).unwrap() {
                let e = e.unwrap();
                assert_eq!(mode(&e.path()), 0o600, "{}", e.path().display());
                files += 1;
            }
        }
        assert!(files > 1 && out.join("meta/CURRENT").is_file());
        assert!(out.join("keys/slots").is_file());
        // no staging directory left behind; a second backup to the same place is refused
        let left: Vec<_> = std::fs::read_dir(out.parent().unwrap()).unwrap().collect();
        assert_eq!(left.len(), 1);
        assert!(
            private_backup(&engine, &out)
                .unwrap_err()
                .contains("already exists")
        );
    }
}
