//! Client of the operator API: a SigV4-signed `POST /?x-strata-admin=VERB` with a JSON body.

use anyhow::{Context as _, bail};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sha2::{Digest, Sha256};

pub async fn call(
    endpoint: &str,
    access_key: &str,
    secret_key: &str,
    region: &str,
    verb: &str,
    body: &serde_json::Value,
) -> anyhow::Result<String> {
    let url = format!("{}/?x-strata-admin={verb}", endpoint.trim_end_matches('/'));
    let uri: http::Uri = url.parse().context("bad endpoint")?;
    let host = uri.authority().context("endpoint has no host")?.to_string();
    let payload = body.to_string().into_bytes();
    let payload_hash = hex::encode(Sha256::digest(&payload));
    let headers = vec![
        ("host".to_string(), host),
        ("content-type".to_string(), "application/json".to_string()),
        ("x-amz-content-sha256".to_string(), payload_hash.clone()),
    ];

    let identity: Identity =
        Credentials::new(access_key, secret_key, None, None, "strata-admin").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("s3")
        .time(std::time::SystemTime::now())
        .settings(SigningSettings::default())
        .build()?
        .into();
    let signable = SignableRequest::new(
        "POST",
        &url,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Precomputed(payload_hash),
    )?;
    let (instructions, _sig) = sign(signable, &params)?.into_parts();

    let mut req = http::Request::builder().method("POST").uri(uri);
    for (k, v) in &headers {
        req = req.header(k, v);
    }
    let mut req = req.body(Full::new(bytes::Bytes::from(payload)))?;
    instructions.apply_to_request_http1x(&mut req);

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
    let resp = client
        .request(req)
        .await
        .context("cannot reach the server")?;
    let status = resp.status();
    let text = String::from_utf8_lossy(&resp.into_body().collect().await?.to_bytes()).into_owned();
    if !status.is_success() {
        bail!("admin request failed ({status}): {text}");
    }
    Ok(text)
}
