//! TLS for the S3 listener: a certificate and key from PEM files, swapped atomically on reload
//! (SIGHUP) so that new handshakes use the new pair while established connections keep theirs,
//! and the self-signed pair `strata serve --tls-self-signed` creates for local use.
//!
//! rustls on the ring provider; TLS 1.2 and 1.3; ALPN `http/1.1` only (the edge serves
//! HTTP/1.1, see `conn.rs`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::Context;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Where the certificate and key are read from, and the configuration made of them last.
pub struct TlsSource {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
}

impl TlsSource {
    /// Reads both files; fails (naming the file) when either is missing, unreadable or does not
    /// match the other.
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Arc<TlsSource>> {
        let config = read_config(cert, key)?;
        Ok(Arc::new(TlsSource {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: RwLock::new(config),
        }))
    }

    /// Reads the files again. On failure the previous pair stays in use (a half-written
    /// certificate never takes the listener down).
    pub fn reload(&self) -> anyhow::Result<()> {
        let config = read_config(&self.cert, &self.key)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = config;
        Ok(())
    }

    /// The configuration for the next handshake.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn cert_path(&self) -> &Path {
        &self.cert
    }
}

fn read_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("TLS certificate {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("TLS certificate {}", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("TLS certificate {}: no certificate in it", cert.display());
    }
    let key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("TLS key {}", key.display()))?;
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .context("TLS certificate and key do not form a usable pair")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The files of the local self-signed pair under `dir`: (certificate, key).
pub fn self_signed_paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// Creates a self-signed certificate for `names` (DNS names or IP addresses) in `dir` unless
/// one is there. Returns whether it was created. The key file is 0600, written before the
/// certificate, and both are fsynced, so a crash leaves either no certificate or a whole pair.
pub fn ensure_self_signed(dir: &Path, names: &[String]) -> anyhow::Result<bool> {
    let (cert_path, key_path) = self_signed_paths(dir);
    if cert_path.exists() && key_path.exists() {
        return Ok(false);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let ck = rcgen::generate_simple_self_signed(names.to_vec())
        .context("generate a self-signed certificate")?;
    write_private(&key_path, ck.signing_key.serialize_pem().as_bytes())?;
    write_private(&cert_path, ck.cert.pem().as_bytes())?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("fsync {}", dir.display()))?;
    Ok(true)
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("write {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_pair_loads_and_reload_keeps_the_old_pair_on_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ensure_self_signed(dir.path(), &["localhost".into(), "127.0.0.1".into()]).unwrap());
        assert!(!ensure_self_signed(dir.path(), &["localhost".into()]).unwrap());
        let (cert, key) = self_signed_paths(dir.path());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let src = TlsSource::load(&cert, &key).unwrap();
        let before = src.config();
        std::fs::write(&cert, b"not a certificate").unwrap();
        assert!(src.reload().is_err());
        assert!(Arc::ptr_eq(&before, &src.config()), "old pair kept");
        assert!(TlsSource::load(&cert, &key).is_err());
    }
}
