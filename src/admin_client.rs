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

/// The CA certificates (PEM) an `https://` endpoint's certificate must chain to: `--ca-bundle`.
static CA_BUNDLE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

pub fn use_ca_bundle(path: std::path::PathBuf) {
    let _ = CA_BUNDLE.set(path);
}

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

    let (status, body) = if req.uri().scheme_str() == Some("https") {
        let resp = send_tls(req).await?;
        (resp.status(), resp.into_body().collect().await?.to_bytes())
    } else {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
        let resp = client
            .request(req)
            .await
            .context("cannot reach the server")?;
        (resp.status(), resp.into_body().collect().await?.to_bytes())
    };
    let text = String::from_utf8_lossy(&body).into_owned();
    if !status.is_success() {
        bail!("admin request failed ({status}): {text}");
    }
    Ok(text)
}

/// One request over HTTPS, the server's certificate checked against `--ca-bundle`.
async fn send_tls(
    req: http::Request<Full<bytes::Bytes>>,
) -> anyhow::Result<http::Response<hyper::body::Incoming>> {
    use rustls_pki_types::pem::PemObject;
    let bundle = CA_BUNDLE
        .get()
        .context("an https:// endpoint needs --ca-bundle FILE (or STRATA_CA_BUNDLE)")?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(bundle)
        .with_context(|| format!("CA bundle {}", bundle.display()))?
    {
        roots
            .add(cert.with_context(|| format!("CA bundle {}", bundle.display()))?)
            .context("CA bundle")?;
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let uri = req.uri().clone();
    let host = uri.host().context("endpoint has no host")?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    let name = rustls_pki_types::ServerName::try_from(host.clone()).context("endpoint host")?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .context("cannot reach the server")?;
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .context("TLS handshake with the server failed")?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender.send_request(req).await?)
}
