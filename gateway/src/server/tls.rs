//! TLS for the listener: the rustls server configuration (TLS 1.2 and 1.3 with the aws-lc-rs
//! provider, ALPN `h2` and `http/1.1`) and a certificate that is reloaded from its PEM files while
//! serving. A broken replacement is logged and the running certificate kept; key material never
//! appears in a log line or an error.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, ServerConfig};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// ALPN protocol ids, in the server's order of preference.
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN id of HTTP/1.1.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// The certificate chain and private key files of a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// PEM certificate chain: the server's certificate first, then intermediates.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC) of the first certificate.
    pub key: PathBuf,
}

/// Why a certificate and key could not be used. Messages name files and reasons, never content.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The certificate file holds no `CERTIFICATE` PEM block.
    #[error("{}: no PEM `CERTIFICATE` block found", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no private key PEM block.
    #[error("{}: no PEM private key found (expected PKCS#8 `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`)", path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// A file is not well-formed PEM.
    #[error("{}: not valid PEM: {reason}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong, in words chosen here (the parser's own text may quote file content).
        reason: &'static str,
    },
    /// The key does not belong to the first certificate of the chain.
    #[error("the private key in {} does not belong to the first certificate in {}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls refused the key or the certificate.
    #[error("{} / {}: {reason}", cert.display(), key.display())]
    Unusable {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls' reason (its messages describe the problem, not the key).
        reason: rustls::Error,
    },
}

fn pem_error(path: &Path, e: pem::Error) -> CertError {
    let reason = match e {
        pem::Error::Io(source) => return CertError::Read { path: path.to_path_buf(), source },
        pem::Error::MissingSectionEnd { .. } => "a PEM block has no END line",
        pem::Error::IllegalSectionStart { .. } => "a malformed BEGIN line",
        pem::Error::Base64Decode(_) => "a PEM block is not valid base64",
        pem::Error::SectionTooLarge => "a PEM block is too large",
        pem::Error::NoItemsFound => "no PEM block found",
        _ => "unreadable PEM",
    };
    CertError::Pem { path: path.to_path_buf(), reason }
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| CertError::Read { path: path.to_path_buf(), source })
}

/// The provider every listener uses: aws-lc-rs with its default suites. For TLS 1.2 these are
/// ECDHE-ECDSA and ECDHE-RSA with AES-128-GCM, AES-256-GCM and ChaCha20-Poly1305; no CBC, no static
/// RSA key exchange.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads and checks a certificate chain and its key.
pub fn load(files: &CertFiles, provider: &CryptoProvider) -> Result<CertifiedKey, CertError> {
    let cert_pem = read(&files.cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(&files.cert, e))?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate { path: files.cert.clone() });
    }
    let key_pem = read(&files.key)?;
    let key = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(k) => k,
        Err(pem::Error::NoItemsFound) => return Err(CertError::NoKey { path: files.key.clone() }),
        Err(e) => return Err(pem_error(&files.key, e)),
    };
    CertifiedKey::from_der(chain, key, provider).map_err(|reason| match reason {
        rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch) => {
            CertError::KeyMismatch { cert: files.cert.clone(), key: files.key.clone() }
        }
        reason => CertError::Unusable { cert: files.cert.clone(), key: files.key.clone(), reason },
    })
}

/// SHA-256 of the end-entity certificate, hex: how logs tell certificates apart.
pub fn leaf_sha256(key: &CertifiedKey) -> String {
    key.cert.first().map(|c| hex::encode(Sha256::digest(c.as_ref()))).unwrap_or_default()
}

/// The listener's certificate: answers every handshake with the current one, and swaps in a new
/// one read from the same files when they change.
pub struct ReloadingCert {
    files: CertFiles,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
}

impl fmt::Debug for ReloadingCert {
    // Only the paths: the key stays out of any debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert").field("files", &self.files).finish_non_exhaustive()
    }
}

impl ReloadingCert {
    /// Loads the files once; an error here should stop the process from starting.
    pub fn load(files: CertFiles, provider: Arc<CryptoProvider>) -> Result<Self, CertError> {
        let first = load(&files, &provider)?;
        Ok(Self { files, provider, current: ArcSwap::from_pointee(first) })
    }

    /// The files it reads.
    pub fn files(&self) -> &CertFiles {
        &self.files
    }

    /// The certificate handshakes get now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }

    /// Reads the files again and swaps the new certificate in; on error the current one stays.
    pub fn reload(&self) -> Result<Arc<CertifiedKey>, CertError> {
        let next = Arc::new(load(&self.files, &self.provider)?);
        self.current.store(next.clone());
        Ok(next)
    }

    fn reload_logged(&self, why: &str) {
        match self.reload() {
            Ok(k) => {
                tracing::info!(reason = why, cert = %self.files.cert.display(), leaf_sha256 = %leaf_sha256(&k), "TLS certificate reloaded")
            }
            Err(e) => {
                tracing::error!(reason = why, problem = %e, "TLS certificate change rejected; the running certificate stays")
            }
        }
    }

    /// Reloads on SIGHUP and when either file changes (checked every `every`), until the process
    /// ends. The same trigger as the configuration's (`reload::on_change`), listening from this call.
    pub fn watch(self: Arc<Self>, every: Duration) -> impl Future<Output = ()> + Send {
        let paths = [self.files.cert.clone(), self.files.key.clone()];
        crate::reload::on_change(
            move || crate::reload::fingerprint_files(paths.iter().map(PathBuf::as_path)),
            every,
            move |why| self.reload_logged(why),
        )
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The rustls configuration of a TLS listener: TLS 1.3 and 1.2 only, no client certificates, the
/// reloading certificate, ALPN `h2` then `http/1.1`.
pub fn server_config(cert: Arc<ReloadingCert>) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(cert.provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::CipherSuite;

    #[test]
    fn offers_the_tls12_suites_entra_uses() {
        let p = provider();
        let suites: Vec<CipherSuite> = p.cipher_suites.iter().map(|s| s.suite()).collect();
        for s in [
            CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            CipherSuite::TLS13_AES_128_GCM_SHA256,
            CipherSuite::TLS13_AES_256_GCM_SHA384,
        ] {
            assert!(suites.contains(&s), "{s:?} offered");
        }
    }

    #[test]
    fn errors_name_files_not_content() {
        let dir = std::env::temp_dir().join(format!("scimbridge-tls-unit-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let secret = "c2VjcmV0LWtleS1tYXRlcmlhbA";
        let key = dir.join("key.pem");
        std::fs::write(&key, format!("-----BEGIN PRIVATE KEY-----\n{secret}!!\n-----END PRIVATE KEY-----\n"))
            .expect("write");
        let cert = dir.join("cert.pem");
        std::fs::write(&cert, "not a certificate\n").expect("write");
        let files = CertFiles { cert: cert.clone(), key: key.clone() };
        let e = load(&files, &provider()).expect_err("no certificate");
        assert!(matches!(e, CertError::NoCertificate { .. }), "{e}");
        assert!(e.to_string().contains("cert.pem"), "{e}");
        let missing = CertFiles { cert: dir.join("nope.pem"), key };
        let e = load(&missing, &provider()).expect_err("missing file");
        assert!(matches!(e, CertError::Read { .. }) && e.to_string().contains("nope.pem"), "{e}");
        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").expect("write");
        let e = load(&files, &provider()).expect_err("bad key");
        assert!(!format!("{e} {e:?}").contains(secret), "key material in {e:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
