//! Test certificates: a CA and leaf certificates for `localhost` and 127.0.0.1 signed by it
//! (webpki refuses a self-signed CA certificate as a server certificate, so tests need both), and
//! clients that trust the CA.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SignatureAlgorithm};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A certificate authority that signs leaves.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub pem: String,
    /// The CA certificate, DER.
    pub der: CertificateDer<'static>,
}

/// A server certificate and its key.
pub struct Leaf {
    /// PEM of the certificate.
    pub cert_pem: String,
    /// PEM (PKCS#8) of the private key.
    pub key_pem: String,
    /// DER of the certificate, to compare with what a server presents.
    pub der: CertificateDer<'static>,
}

impl Ca {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        Self { pem: cert.pem(), der: cert.der().clone(), issuer: Issuer::new(params, key) }
    }

    /// A leaf for `localhost` and 127.0.0.1 with an ECDSA P-256 key.
    pub fn leaf(&self) -> Leaf {
        self.leaf_with(&rcgen::PKCS_ECDSA_P256_SHA256)
    }

    /// A leaf for `localhost` and 127.0.0.1 with a key of this algorithm (e.g. RSA).
    pub fn leaf_with(&self, alg: &'static SignatureAlgorithm) -> Leaf {
        self.issue(alg, rcgen::ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate (for servers that authenticate their clients), ECDSA P-256.
    pub fn client_leaf(&self) -> Leaf {
        self.issue(&rcgen::PKCS_ECDSA_P256_SHA256, rcgen::ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(&self, alg: &'static SignatureAlgorithm, purpose: rcgen::ExtendedKeyUsagePurpose) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, "scimbridge test");
        params.extended_key_usages = vec![purpose];
        let key = KeyPair::generate_for(alg).expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf certificate");
        Leaf { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().clone() }
    }
}

impl Leaf {
    /// Writes `cert.pem` and `key.pem` into `dir`, replacing what is there; returns their paths.
    pub fn write(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        // Each file appears whole (write beside, then rename), as a careful deploy tool does.
        replace(&key, self.key_pem.as_bytes());
        replace(&cert, self.cert_pem.as_bytes());
        (cert, key)
    }
}

/// Replaces `path` atomically with `content`.
pub fn replace(path: &Path, content: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// A reqwest client that trusts only these CAs.
pub fn https_client(cas: &[&Ca], builder: reqwest::ClientBuilder) -> reqwest::Client {
    let certs = cas.iter().map(|ca| reqwest::Certificate::from_pem(ca.pem.as_bytes()).expect("CA pem"));
    builder.tls_certs_only(certs).build().expect("client")
}

/// A rustls client configuration that trusts these CAs, with these TLS versions and cipher suites
/// (all the provider's when `suites` is empty) and ALPN ids.
pub fn client_config(
    cas: &[&Ca],
    versions: &[&'static rustls::SupportedProtocolVersion],
    suites: &[rustls::CipherSuite],
    alpn: &[&[u8]],
) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        roots.add(ca.der.clone()).expect("CA");
    }
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if !suites.is_empty() {
        provider.cipher_suites.retain(|s| suites.contains(&s.suite()));
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// A TLS connection to `addr` (`127.0.0.1:port`) with this configuration.
pub async fn connect(addr: &str, config: rustls::ClientConfig) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("127.0.0.1").expect("server name").to_owned();
    TlsConnector::from(Arc::new(config)).connect(name, tcp).await
}

/// The certificate the server at `addr` presents on a new connection.
pub async fn presented(addr: &str, cas: &[&Ca]) -> CertificateDer<'static> {
    let tls = connect(addr, client_config(cas, rustls::ALL_VERSIONS, &[], &[])).await.expect("TLS handshake");
    let certs = tls.get_ref().1.peer_certificates().expect("server certificates");
    certs[0].clone().into_owned()
}
