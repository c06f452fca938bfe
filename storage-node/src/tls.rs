//! Cluster identity: a cluster CA (`strata cluster init`), certificates it issues to nodes and
//! gateways (`strata cluster issue`), and the rustls configurations that make every
//! gateway->node and node->node connection mutual TLS. A node accepts only clients presenting a
//! certificate of its cluster CA, and a client accepts only a node whose certificate is from
//! that CA and names the address it dialled; so data keys and shards never cross the network in
//! the clear or to a stranger.
//!
//! Files: a CA directory holds `ca.pem` and `ca.key` (mode 0600); an issued directory holds
//! `cert.pem`, `key.pem` (0600) and a copy of `ca.pem`, which is all a process needs
//! ([`ClusterTls::load`]).

use std::io::Write as _;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";
pub const CERT: &str = "cert.pem";
pub const KEY: &str = "key.pem";

const CA_NAME: &str = "Strata cluster CA";

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The CA's parameters. Rebuilt identically when issuing, so the issuer name of a leaf matches
/// the CA certificate's subject byte for byte (rcgen then needs no X.509 parser).
fn ca_params() -> Result<CertificateParams, Error> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, CA_NAME);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = rcgen::date_time_ymd(2025, 1, 1);
    p.not_after = rcgen::date_time_ymd(2045, 1, 1);
    Ok(p)
}

/// Writes `bytes` to a new file `path` (refusing to replace one) with `mode`, fsync'd.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

fn fsync_dir(dir: &Path) -> Result<(), Error> {
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// `strata cluster init DIR`: a new cluster CA in `dir` (created; existing CA files are never
/// replaced). The key file is 0600.
pub fn init_ca(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir)?;
    let key = KeyPair::generate()?;
    let cert = ca_params()?.self_signed(&key)?;
    write_new(&dir.join(CA_KEY), key.serialize_pem().as_bytes(), 0o600)?;
    write_new(&dir.join(CA_CERT), cert.pem().as_bytes(), 0o644)?;
    fsync_dir(dir)
}

/// `strata cluster issue --ca DIR --name N --out OUT [--san ...]`: a certificate for node or
/// gateway `name`, valid for client and server use, with subject alternative names `sans`
/// (IP addresses or DNS names; `name` itself is always one). Writes `cert.pem`, `key.pem`
/// (0600) and `ca.pem` into `out`.
pub fn issue(ca_dir: &Path, name: &str, sans: &[String], out: &Path) -> Result<(), Error> {
    let ca_key = KeyPair::from_pem(&std::fs::read_to_string(ca_dir.join(CA_KEY))?)?;
    let ca_pem = std::fs::read(ca_dir.join(CA_CERT))?;
    let issuer = Issuer::new(ca_params()?, ca_key);
    let mut names: Vec<String> = vec![name.to_owned()];
    names.extend(sans.iter().filter(|s| s.as_str() != name).cloned());
    let mut p = CertificateParams::new(names)?;
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.not_before = rcgen::date_time_ymd(2025, 1, 1);
    p.not_after = rcgen::date_time_ymd(2045, 1, 1);
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, &issuer)?;
    std::fs::create_dir_all(out)?;
    write_new(&out.join(KEY), key.serialize_pem().as_bytes(), 0o600)?;
    write_new(&out.join(CERT), cert.pem().as_bytes(), 0o644)?;
    write_new(&out.join(CA_CERT), &ca_pem, 0o644)?;
    fsync_dir(out)
}

/// The TLS side of one cluster process: its certificate and key, and the cluster CA.
#[derive(Clone)]
pub struct ClusterTls {
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterTls")
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl ClusterTls {
    /// Loads `cert.pem`, `key.pem` and `ca.pem` from `dir` (as `issue` wrote them). The server
    /// side requires a client certificate from the CA; the client side presents ours and
    /// trusts only the CA.
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let read = |name: &str| {
            std::fs::read(dir.join(name)).map_err(|e| format!("{}: {e}", dir.join(name).display()))
        };
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(&read(CERT)?).collect::<Result<_, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(&read(KEY)?)?;
        let mut roots = RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(&read(CA_CERT)?) {
            roots.add(ca?)?;
        }
        let roots = Arc::new(roots);
        let verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider()).build()?;
        let server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs.clone(), key.clone_key())?;
        let client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)?;
        Ok(ClusterTls {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }
}

/// The name a client checks in a node's certificate: the IP it dialled.
pub fn server_name(ip: IpAddr) -> rustls::pki_types::ServerName<'static> {
    rustls::pki_types::ServerName::IpAddress(ip.into())
}
