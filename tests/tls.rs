//! `scimbridge serve --tls-cert --tls-key`: SCIM over HTTPS, HTTP/2 and HTTP/1.1 by ALPN, TLS 1.2
//! with the suites Entra uses, certificates replaced on disk while serving (and broken
//! replacements refused), handshake timeout, and clear startup errors. Certificates come from a
//! test CA made with rcgen.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::certs::{self, Ca, Leaf};
use common::*;
use reqwest::{Method, Version};
use rustls::CipherSuite;
use tokio::io::AsyncReadExt;

/// The TLS 1.2 suites Entra's provisioning service negotiates (ECDHE, AES-GCM).
const ENTRA_TLS12: &[CipherSuite] = &[
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
];

/// A gateway serving HTTPS with `leaf` (files in a fresh directory), trusted through `ca`.
fn tls_gateway(ca: &Ca, leaf: &Leaf, extra: &[&str]) -> (Gateway, PathBuf) {
    let dir = temp_dir("tls");
    let (cert, key) = leaf.write(&dir);
    let (cert, key) = (cert.to_string_lossy().into_owned(), key.to_string_lossy().into_owned());
    let mut args = vec!["--tls-cert", &cert, "--tls-key", &key];
    args.extend_from_slice(extra);
    let http = certs::https_client(&[ca], reqwest::Client::builder());
    let gw = Gateway::serve_with(&demo_config(), &temp_dir("data"), DemoApp::start(), &args, &[], http);
    assert!(gw.url.starts_with("https://"), "announces https: {}", gw.url);
    (gw, dir)
}

#[tokio::test]
async fn scim_over_https_with_http2_or_http11_by_alpn() {
    let ca = Ca::new("scimbridge test CA");
    let (gw, _dir) = tls_gateway(&ca, &ca.leaf(), &[]);
    // The harness client trusts the CA and offers h2 and http/1.1.
    let created = gw.entra_create_user("tls@example.com").await;
    created.expect(201, "create over HTTPS");
    let location = created.body["meta"]["location"].as_str().expect("meta.location");
    assert!(location.starts_with(&format!("{}/demo/scim/v2/Users/", gw.url)), "https location: {location}");
    let read = gw.get(&format!("/Users/{}", created.id())).await;
    read.expect(200, "read back over HTTPS");

    let url = format!("{}/ServiceProviderConfig", gw.base());
    let h2 = certs::https_client(&[&ca], reqwest::Client::builder());
    let r = h2.get(&url).bearer_auth(TOKEN).send().await.expect("h2 request");
    assert_eq!((r.status().as_u16(), r.version()), (200, Version::HTTP_2), "ALPN chose h2");
    let h1 = certs::https_client(&[&ca], reqwest::Client::builder().http1_only());
    let r = h1.get(&url).bearer_auth(TOKEN).send().await.expect("http/1.1 request");
    assert_eq!((r.status().as_u16(), r.version()), (200, Version::HTTP_11), "ALPN chose http/1.1");

    // ALPN as negotiated on the wire, and a client offering no ALPN at all still gets HTTP/1.1.
    let all = rustls::ALL_VERSIONS;
    let tls = certs::connect(&gw.addr(), certs::client_config(&[&ca], all, &[], &[b"h2", b"http/1.1"])).await;
    assert_eq!(tls.expect("handshake").get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let tls = certs::connect(&gw.addr(), certs::client_config(&[&ca], all, &[], &[b"http/1.1"])).await;
    assert_eq!(tls.expect("handshake").get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut tls = certs::connect(&gw.addr(), certs::client_config(&[&ca], all, &[], &[])).await.expect("handshake");
    tokio::io::AsyncWriteExt::write_all(&mut tls, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = String::new();
    tls.read_to_string(&mut answer).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // A client that does not trust the CA, and cleartext on the TLS port, get nowhere.
    let other = Ca::new("another CA");
    let stranger = certs::https_client(&[&other], reqwest::Client::builder());
    assert!(stranger.get(&url).send().await.is_err(), "untrusted certificate refused by the client");
    let plain = reqwest::Client::new().get(format!("http://{}/healthz", gw.addr())).send().await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true), "no cleartext HTTP on a TLS listener");
}

#[tokio::test]
async fn tls12_only_clients_with_entra_suites_succeed_for_rsa_and_ecdsa_certificates() {
    let ca = Ca::new("scimbridge test CA");
    for (what, leaf) in [("RSA", ca.leaf_with(&rcgen::PKCS_RSA_SHA256)), ("ECDSA", ca.leaf())] {
        let (gw, _dir) = tls_gateway(&ca, &leaf, &[]);
        let tls12 = &[&rustls::version::TLS12];
        let tls = certs::connect(&gw.addr(), certs::client_config(&[&ca], tls12, ENTRA_TLS12, &[b"http/1.1"]))
            .await
            .unwrap_or_else(|e| panic!("{what}: TLS 1.2 handshake with Entra's suites: {e}"));
        let conn = tls.get_ref().1;
        assert_eq!(conn.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2), "{what}");
        let suite = conn.negotiated_cipher_suite().expect("suite").suite();
        assert!(ENTRA_TLS12.contains(&suite), "{what}: {suite:?}");
        let expected_kx = if what == "RSA" { "ECDHE_RSA" } else { "ECDHE_ECDSA" };
        assert!(format!("{suite:?}").contains(expected_kx), "{what}: {suite:?}");

        // A whole SCIM request through a TLS 1.2-only client.
        let config = certs::client_config(&[&ca], tls12, ENTRA_TLS12, &[b"h2", b"http/1.1"]);
        let client = reqwest::Client::builder().tls_backend_preconfigured(config).build().expect("client");
        let r = client.get(format!("{}/Users?count=1", gw.base())).bearer_auth(TOKEN).send().await.expect("request");
        assert_eq!(r.status(), 200, "{what}");
    }
}

#[tokio::test]
async fn certificates_are_reloaded_from_disk_and_broken_ones_refused() {
    let (ca1, ca2) = (Ca::new("first CA"), Ca::new("second CA"));
    let first = ca1.leaf();
    let (gw, dir) = tls_gateway(&ca1, &first, &[]);
    let pid = gw.proc.pid();
    let addr = gw.addr();
    assert_eq!(certs::presented(&addr, &[&ca1]).await, first.der);
    // A connection opened before the change keeps working on the old certificate.
    let kept = certs::https_client(&[&ca1], reqwest::Client::builder());
    kept.get(format!("{}/healthz", gw.url)).send().await.expect("before");

    // A new leaf from another CA, written over the files: picked up by polling, no restart.
    let second = ca2.leaf();
    second.write(&dir);
    assert!(
        wait_presented(&addr, &[&ca1, &ca2], &second.der, Duration::from_secs(10)).await,
        "new connections see the new certificate"
    );
    assert_eq!(gw.proc.pid(), pid);
    assert!(gw.logs.count(&["TLS certificate reloaded", "files changed"]) >= 1, "{}", gw.logs.text());
    let r = certs::https_client(&[&ca2], reqwest::Client::builder()).get(format!("{}/healthz", gw.url)).send().await;
    assert_eq!(r.expect("trusting only the new CA").status(), 200);
    kept.get(format!("{}/healthz", gw.url)).send().await.expect("the pooled connection survives the change");

    // Broken replacements are refused; the running certificate stays.
    let rejected = |n| gw.logs.wait_for(&["TLS certificate change rejected"], n, Duration::from_secs(10));
    certs::replace(&dir.join("cert.pem"), b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n");
    assert!(rejected(1).await, "garbage certificate rejected: {}", gw.logs.text());
    assert_eq!(certs::presented(&addr, &[&ca2]).await, second.der);
    let third = ca2.leaf();
    certs::replace(&dir.join("cert.pem"), third.cert_pem.as_bytes()); // the key is still the second's
    assert!(rejected(2).await, "mismatched key rejected: {}", gw.logs.text());
    assert!(gw.logs.count(&["does not belong"]) >= 1, "{}", gw.logs.text());
    assert_eq!(certs::presented(&addr, &[&ca2]).await, second.der);

    // SIGHUP reloads at once, too.
    certs::replace(&dir.join("key.pem"), third.key_pem.as_bytes());
    gw.proc.signal("HUP");
    assert!(
        gw.logs.wait_for(&["TLS certificate reloaded", "SIGHUP"], 1, Duration::from_secs(5)).await,
        "{}",
        gw.logs.text()
    );
    assert_eq!(certs::presented(&addr, &[&ca2]).await, third.der);

    // No key material in the log.
    let log = gw.logs.text();
    for leaf in [&first, &second, &third] {
        let body_line = leaf.key_pem.lines().nth(1).expect("PEM body line");
        assert!(!log.contains(body_line), "key material logged");
    }
    assert!(!log.contains("PRIVATE KEY-----"), "key PEM logged");
}

async fn wait_presented(addr: &str, cas: &[&Ca], want: &[u8], timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if certs::presented(addr, cas).await.as_ref() == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

#[tokio::test]
async fn a_client_that_never_finishes_the_handshake_is_dropped() {
    let ca = Ca::new("scimbridge test CA");
    let leaf = ca.leaf();
    let (gw, _dir) = tls_gateway(&ca, &leaf, &["--tls-handshake-timeout", "1s"]);
    let mut s = tokio::net::TcpStream::connect(gw.addr()).await.expect("connect");
    let start = Instant::now();
    let mut buf = [0u8; 64];
    let r = tokio::time::timeout(Duration::from_secs(6), s.read(&mut buf)).await.expect("closed within 6 s");
    assert!(matches!(r, Ok(0) | Err(_)), "closed, not answered: {r:?}");
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(4), "{took:?}");
    // The listener still serves others.
    assert_eq!(certs::presented(&gw.addr(), &[&ca]).await, leaf.der);
}

/// Runs `scimbridge serve` expected to refuse to start; returns its exit success and stderr.
fn refused(args: &[&str]) -> (bool, String) {
    let config = demo_config();
    let mut child = Command::new(env!("CARGO_BIN_EXE_scimbridge"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(temp_dir("data"))
        .args(args)
        .env("DEMO_APP_API_KEY", "unused")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("scimbridge started instead of refusing: {args:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err).expect("stderr");
    (status.success(), err)
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[test]
fn startup_with_a_bad_certificate_or_key_fails_clearly() {
    let ca = Ca::new("scimbridge test CA");
    let dir = temp_dir("tls-bad");
    let (cert, key) = ca.leaf().write(&dir);
    let (cert, key) = (path_str(&cert), path_str(&key));
    let missing = path_str(&dir.join("missing.pem"));

    let (ok, err) = refused(&["--tls-cert", &missing, "--tls-key", &key]);
    assert!(!ok);
    assert!(err.contains("missing.pem") && err.contains("refusing to start"), "{err}");

    let other = ca.leaf();
    let other_key = dir.join("other-key.pem");
    std::fs::write(&other_key, &other.key_pem).expect("write");
    let (ok, err) = refused(&["--tls-cert", &cert, "--tls-key", &path_str(&other_key)]);
    assert!(!ok);
    assert!(err.contains("does not belong"), "{err}");
    assert!(!err.contains(other.key_pem.lines().nth(1).expect("PEM body")), "no key material: {err}");

    let (ok, err) = refused(&["--tls-cert", &key, "--tls-key", &key]);
    assert!(!ok);
    assert!(err.contains("no PEM `CERTIFICATE` block"), "{err}");

    let (ok, err) = refused(&["--tls-cert", &cert, "--tls-key", &cert]);
    assert!(!ok);
    assert!(err.contains("no PEM private key"), "{err}");

    let (ok, err) = refused(&["--tls-cert", &cert]);
    assert!(!ok);
    assert!(err.contains("--tls-key"), "both or neither: {err}");
}

#[tokio::test]
async fn tls_settings_come_from_the_environment_too() {
    let ca = Ca::new("scimbridge test CA");
    let leaf = ca.leaf();
    let dir = temp_dir("tls-env");
    let (cert, key) = leaf.write(&dir);
    let app = DemoApp::start();
    let config = demo_config();
    let data = temp_dir("data");
    let http = certs::https_client(&[&ca], reqwest::Client::builder());
    let (cert, key) = (path_str(&cert), path_str(&key));
    let env = [("SCIMBRIDGE_TLS_CERT", cert.as_str()), ("SCIMBRIDGE_TLS_KEY", key.as_str())];
    let gw = Gateway::serve_with(&config, &data, app, &[], &env, http);
    assert!(gw.url.starts_with("https://"), "{}", gw.url);
    gw.scim(Method::GET, "/ServiceProviderConfig", None).await.expect(200, "over HTTPS");
    assert_eq!(certs::presented(&gw.addr(), &[&ca]).await, leaf.der);
}
