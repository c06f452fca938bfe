//! The operator API: `POST /?x-strata-admin=VERB` with a JSON body, signed with SigV4 like any S3
//! request (s3s verifies the signature) and allowed only to admin users. The `strata admin` CLI
//! is its client.

use std::path::PathBuf;
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

pub const ADMIN_QUERY: &str = "x-strata-admin";

/// Operations that need the local chunk store (only in processes that host one).
#[async_trait::async_trait]
pub trait NodeAdmin: Send + Sync + 'static {
    async fn scrub(&self, repair: bool) -> anyhow::Result<Value>;
}

pub struct AdminRoute {
    pub ctx: Arc<Context>,
    pub node: Option<Arc<dyn NodeAdmin>>,
}

fn verb(uri: &Uri) -> Option<String> {
    uri.query()?.split('&').find_map(|p| {
        p.strip_prefix(ADMIN_QUERY)
            .and_then(|r| r.strip_prefix('='))
            .map(str::to_string)
    })
}

fn bad(msg: impl Into<String>) -> S3Error {
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

    async fn call(&self, req: S3Request<Body>) -> S3Result<S3Response<Body>> {
        let who = auth::caller(&self.ctx.meta, &req.credentials)?;
        if !who.is_admin {
            tracing::warn!(target: "strata::security", user = %who.user, "admin API refused: not an admin");
            return Err(s3_error!(AccessDenied));
        }
        let verb = verb(&req.uri).unwrap_or_default();
        let body = req
            .input
            .collect()
            .await
            .map_err(|_| s3_error!(IncompleteBody))?
            .to_bytes();
        if body.len() > 64 * 1024 {
            return Err(s3_error!(MaxMessageLengthExceeded));
        }
        let args: Args = if body.is_empty() {
            Args::default()
        } else {
            serde_json::from_slice(&body).map_err(|e| bad(format!("bad JSON: {e}")))?
        };
        let meta = &self.ctx.meta;
        let master = &self.ctx.master;
        let out: Value = match verb.as_str() {
            "user-add" => {
                let name = args.name.ok_or_else(|| bad("name is required"))?;
                if !valid_user_name(&name) {
                    return Err(bad("user names are 1-64 characters of A-Z a-z 0-9 - _ . @"));
                }
                let (ak, sk) = auth::create_user_with_key(meta, master, &name, false, None)
                    .map_err(errors::meta)?;
                tracing::info!(target: "strata::audit", admin = %who.user, user = %name, access_key = %ak, "user created");
                json!({"user": name, "access_key": ak, "secret_key": sk})
            }
            "user-list" => {
                let keys = meta.list_access_keys().map_err(errors::meta)?;
                let users = meta.list_users().map_err(errors::meta)?;
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
                let u = meta
                    .get_user(&name)
                    .map_err(errors::meta)?
                    .ok_or_else(|| bad("no such user"))?;
                if u.is_admin {
                    return Err(bad("the admin user cannot be removed"));
                }
                meta.delete_user(&name).map_err(errors::meta)?;
                tracing::info!(target: "strata::audit", admin = %who.user, user = %name, "user removed");
                json!({"removed": name})
            }
            "key-create" => {
                let user = args.user.ok_or_else(|| bad("user is required"))?;
                let rec = meta
                    .get_user(&user)
                    .map_err(errors::meta)?
                    .ok_or_else(|| bad("no such user"))?;
                let (ak, sk) = auth::add_key(meta, master, &rec.id, None).map_err(errors::meta)?;
                tracing::info!(target: "strata::audit", admin = %who.user, user = %user, access_key = %ak, "access key created");
                json!({"user": user, "access_key": ak, "secret_key": sk})
            }
            "key-revoke" => {
                let ak = args
                    .access_key
                    .ok_or_else(|| bad("access_key is required"))?;
                let mut rec = meta
                    .get_access_key(&ak)
                    .map_err(errors::meta)?
                    .ok_or_else(|| bad("no such access key"))?;
                rec.revoked = true;
                meta.put_access_key(rec).map_err(errors::meta)?;
                tracing::info!(target: "strata::audit", admin = %who.user, access_key = %ak, "access key revoked");
                json!({"revoked": ak})
            }
            "backup" => {
                let dir = PathBuf::from(args.dir.ok_or_else(|| bad("dir is required"))?);
                let started = std::time::Instant::now();
                let meta = meta.clone();
                let d = dir.clone();
                tokio::task::spawn_blocking(move || meta.backup(&d))
                    .await
                    .map_err(|_| s3_error!(InternalError))?
                    .map_err(|e| bad(format!("backup failed: {e}")))?;
                tracing::info!(target: "strata::audit", admin = %who.user, dir = %dir.display(), "metadata backup taken");
                json!({"backup": dir, "millis": started.elapsed().as_millis() as u64})
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
        let mut resp = S3Response::new(Body::from(out.to_string()));
        resp.headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        Ok(resp)
    }
}
