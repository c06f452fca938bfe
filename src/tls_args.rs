//! `strata serve`'s TLS options: which certificate, which listeners, reload on SIGHUP.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_gateway::http::tls::{self, TlsSource};

#[derive(clap::Args, Clone, Debug)]
pub struct TlsArgs {
    /// PEM certificate chain for HTTPS (with --tls-key). Reloaded on SIGHUP.
    #[arg(long, env = "STRATA_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS (with --tls-cert). Reloaded on SIGHUP.
    #[arg(long, env = "STRATA_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Create (once) and use a self-signed certificate in DATA/tls/ for local use.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
    pub tls_self_signed: bool,
    /// Also listen for HTTPS here, beside the plain-HTTP `--listen`. Without it, `--listen`
    /// itself serves HTTPS whenever a certificate is configured.
    #[arg(long, env = "STRATA_TLS_LISTEN")]
    pub tls_listen: Option<SocketAddr>,
}

/// The listeners to open: (address, TLS or not).
pub struct Listeners {
    pub plain: Option<SocketAddr>,
    pub tls: Option<(SocketAddr, Arc<TlsSource>)>,
}

impl TlsArgs {
    /// Loads the certificate (creating the self-signed one if asked) and decides the listeners.
    pub fn listeners(&self, listen: SocketAddr, data_dir: &Path) -> anyhow::Result<Listeners> {
        let source = if self.tls_self_signed {
            let dir = data_dir.join("tls");
            let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
            for a in [Some(listen), self.tls_listen].into_iter().flatten() {
                let ip = a.ip();
                if !ip.is_unspecified() && !names.contains(&ip.to_string()) {
                    names.push(ip.to_string());
                }
            }
            let created = tls::ensure_self_signed(&dir, &names)?;
            let (cert, key) = tls::self_signed_paths(&dir);
            println!(
                "strata: TLS with a self-signed certificate{} ({}): trust it with `aws --ca-bundle {p}`, boto3 `verify=\"{p}\"`, `rclone --ca-cert {p}`, `curl --cacert {p}`",
                if created { " created now" } else { "" },
                names.join(", "),
                p = cert.display()
            );
            Some(TlsSource::load(&cert, &key)?)
        } else {
            match (&self.tls_cert, &self.tls_key) {
                (Some(c), Some(k)) => Some(TlsSource::load(c, k)?),
                _ => None,
            }
        };
        Ok(match (source, self.tls_listen) {
            (None, Some(_)) => {
                anyhow::bail!("--tls-listen needs --tls-cert and --tls-key, or --tls-self-signed")
            }
            (None, None) => Listeners {
                plain: Some(listen),
                tls: None,
            },
            (Some(s), None) => Listeners {
                plain: None,
                tls: Some((listen, s)),
            },
            (Some(s), Some(at)) => Listeners {
                plain: Some(listen),
                tls: Some((at, s)),
            },
        })
    }
}

/// Reloads the certificate and key on every SIGHUP; a bad pair is logged and the old one kept.
pub fn reload_on_sighup(source: Arc<TlsSource>) {
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("SIGHUP handler unavailable: TLS certificates will not be reloaded");
            return;
        };
        while hup.recv().await.is_some() {
            match source.reload() {
                Ok(()) => {
                    tracing::info!(cert = %source.cert_path().display(), "TLS certificate reloaded")
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}").chars().take(300).collect::<String>(),
                    "TLS certificate reload failed; the previous certificate stays in use")
                }
            }
        }
    });
}
