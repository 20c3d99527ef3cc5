//! Every way to authenticate to a tenant, over HTTP against the real gateway: static tokens (with
//! rotation and expiry), Entra ID and OpenID Connect JWTs checked against a real JWKS endpoint
//! served by this test (with key rollover), and the tenant's own OAuth client-credentials endpoint.
//! Each path accepts what it should and refuses the rest with the same SCIM 401.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use common::*;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use reqwest::Method;
use serde_json::{Value, json};

const DIR_A: &str = "6f1b6c4e-2f8e-4d7a-9a52-1e0a3f3b2c11";
const DIR_B: &str = "0d0c3a2e-8a1f-4b7e-b2a4-7c9f3e1d5a66";
const ENTRA_AUD: &str = "8adf8e6e-67b2-4cf2-a259-e3dc5476c621";
const OAUTH_SECRET: &str = "an-oauth-signing-secret-of-enough-length-0123456789";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("tests/fixtures/jwt").join(name)).unwrap()
}

fn encoding_key(alg: Algorithm, name: &str) -> EncodingKey {
    let pem = fixture(name);
    match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        _ => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    }
}

/// The public JWK of a fixture key, with a key id.
fn jwk(alg: Algorithm, name: &str, kid: &str) -> Value {
    let mut jwk = Jwk::from_encoding_key(&encoding_key(alg, name), alg).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    serde_json::to_value(jwk).unwrap()
}

fn sign(alg: Algorithm, name: &str, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, &encoding_key(alg, name)).unwrap()
}

/// A minimal identity provider: a JWKS and an OpenID discovery document, counting fetches.
struct Idp {
    url: String,
    keys: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct IdpState {
    url: String,
    keys: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
}

async fn idp(keys: Value) -> Idp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let state = IdpState { url: url.clone(), keys: Arc::new(Mutex::new(keys)), fetches: Arc::default() };
    let app = Router::new()
        .route(
            "/keys",
            get(|State(s): State<IdpState>| async move {
                s.fetches.fetch_add(1, Ordering::SeqCst);
                axum::Json(s.keys.lock().unwrap().clone())
            }),
        )
        .route(
            "/.well-known/openid-configuration",
            get(|State(s): State<IdpState>| async move {
                axum::Json(json!({"issuer": s.url, "jwks_uri": format!("{}/keys", s.url)}))
            }),
        )
        .with_state(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Idp { url, keys: state.keys, fetches: state.fetches }
}

/// Config with four tenants on the demo app: `statics` (static tokens), `entra` and `entra-b`
/// (Entra JWTs of two directories), `oidc` (an OIDC issuer, ES256) and `issuing` (token endpoint).
fn config(idp: &str) -> PathBuf {
    let dir = temp_dir("auth-config");
    std::fs::create_dir_all(dir.join("tenants")).unwrap();
    std::fs::create_dir_all(dir.join("mappings")).unwrap();
    std::fs::copy(repo_root().join("mappings/demo-app.yaml"), dir.join("mappings/demo-app.yaml")).unwrap();
    let backend = "mapping: demo-app\nbackend:\n  base_url: \"${DEMO_APP_URL}\"\n  credentials:\n    api_key: \"${DEMO_APP_API_KEY}\"\n";
    let write = |id: &str, auth: &str| {
        std::fs::write(dir.join(format!("tenants/{id}.yaml")), format!("id: {id}\n{backend}auth:\n{auth}")).unwrap();
    };
    write(
        "statics",
        &format!(
            "  tokens:\n    - label: old\n      sha256: \"{}\"\n    - label: new\n      sha256: \"{}\"\n      expires: \"2999-01-01T00:00:00Z\"\n    - label: lapsed\n      sha256: \"{}\"\n      expires: \"2020-01-01T00:00:00Z\"\n",
            hex(&scimbridge::auth::hash_token("old-token")),
            hex(&scimbridge::auth::hash_token("new-token")),
            hex(&scimbridge::auth::hash_token("lapsed-token")),
        ),
    );
    for (id, directory) in [("entra", DIR_A), ("entra-b", DIR_B)] {
        write(
            id,
            &format!(
                "  jwt:\n    - label: entra\n      preset: entra\n      entra_tenant_id: {directory}\n      jwks_url: \"{idp}/keys\"\n      jwks_min_refresh_s: 1\n"
            ),
        );
    }
    write(
        "oidc",
        &format!(
            "  jwt:\n    - label: okta\n      preset: oidc\n      issuer: \"{idp}\"\n      audience: scim-oidc\n      algorithm: ES256\n"
        ),
    );
    write(
        "issuing",
        &format!(
            "  oauth:\n    signing_secret: \"${{OAUTH_SECRET}}\"\n    clients:\n      - client_id: entra-client\n        secret_sha256: \"{}\"\n",
            hex(&scimbridge::auth::hash_token("client-secret"))
        ),
    );
    dir
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn serve(config: &Path) -> Gateway {
    let app = DemoApp::start();
    Gateway::serve_env(
        config,
        &temp_dir("auth-data"),
        &[("DEMO_APP_URL", &app.url), ("DEMO_APP_API_KEY", &app.api_key), ("OAUTH_SECRET", OAUTH_SECRET)],
    )
    .with_app(app)
}

/// GET /Users on `tenant` with `token`: the status, after checking a refusal's shape.
async fn status(gw: &Gateway, tenant: &str, token: &str) -> u16 {
    let r = gw.scim_as(token, Method::GET, &format!("{}/Users", gw.tenant_base(tenant)), None, &[]).await;
    if r.status == 401 {
        assert_eq!(r.body["status"], "401", "a refusal is a SCIM error: {:?}", r.body);
        assert_eq!(r.body["detail"], "authentication required: a valid bearer token for this tenant");
        assert!(r.headers.get("www-authenticate").is_some());
    }
    r.status.as_u16()
}

fn entra_claims(directory: &str) -> Value {
    let now = get_current_timestamp();
    json!({
        "iss": format!("https://sts.windows.net/{directory}/"),
        "aud": ENTRA_AUD,
        "tid": directory,
        "sub": "entra-provisioning",
        "iat": now,
        "nbf": now - 10,
        "exp": now + 3600,
    })
}

fn with(claims: &Value, key: &str, value: Value) -> Value {
    let mut c = claims.clone();
    c[key] = value;
    c
}

#[tokio::test]
async fn static_tokens_rotate_and_expire() {
    let idp = idp(json!({"keys": []})).await;
    let config = config(&idp.url);
    let gw = serve(&config);
    assert_eq!(status(&gw, "statics", "old-token").await, 200);
    assert_eq!(status(&gw, "statics", "new-token").await, 200);
    assert_eq!(status(&gw, "statics", "lapsed-token").await, 401, "an expired token");
    assert_eq!(status(&gw, "statics", "wrong-token").await, 401);
    assert_eq!(status(&gw, "entra", "old-token").await, 401, "another tenant's token");
    // Rotation finished: the old token leaves the file and stops working without a restart.
    let file = config.join("tenants/statics.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let start = text.find("    - label: old\n").unwrap();
    let end = text.find("    - label: new\n").unwrap();
    std::fs::write(&file, format!("{}{}", &text[..start], &text[end..])).unwrap();
    let mut gone = false;
    for _ in 0..100 {
        if status(&gw, "statics", "old-token").await == 401 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the rotated-out token still works");
    assert_eq!(status(&gw, "statics", "new-token").await, 200);

    // `scimbridge token rotate` adds a token to the file of the running gateway.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scimbridge"))
        .args(["token", "rotate", "--tenant", "statics", "--label", "cli", "--retire-others-in", "7d", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let secret =
        stdout.lines().find_map(|l| l.strip_prefix("token (shown once; give it to the identity provider): ")).unwrap();
    let mut picked_up = false;
    for _ in 0..100 {
        if status(&gw, "statics", secret).await == 200 {
            picked_up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(picked_up, "the rotated-in token was not picked up");
    // The other tokens already had an expiry and keep it; the new one has none.
    assert_eq!(status(&gw, "statics", "new-token").await, 200);
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.matches("expires:").count(), 2, "{text}");
    assert!(
        text.contains("2999-01-01T00:00:00Z")
            && text.ends_with(&format!(
                "- label: \"cli\"\n      sha256: \"{}\"\n",
                hex(&scimbridge::auth::hash_token(secret))
            )),
        "{text}"
    );
    assert!(!text.contains(secret), "only the hash is stored");
}

#[tokio::test]
async fn entra_jwts_are_checked_completely() {
    let idp = idp(json!({"keys": [jwk(Algorithm::RS256, "rsa1.key.pem", "k1")]})).await;
    let gw = serve(&config(&idp.url));
    let good = entra_claims(DIR_A);
    let rs = |claims: &Value| sign(Algorithm::RS256, "rsa1.key.pem", Some("k1"), claims);
    assert_eq!(status(&gw, "entra", &rs(&good)).await, 200);
    // The v2 issuer of the same directory is Entra too.
    let v2 = with(&good, "iss", json!(format!("https://login.microsoftonline.com/{DIR_A}/v2.0")));
    assert_eq!(status(&gw, "entra", &rs(&v2)).await, 200);
    let now = get_current_timestamp();
    let refused = [
        ("expired", rs(&with(&good, "exp", json!(now - 3600)))),
        ("not yet valid", rs(&with(&good, "nbf", json!(now + 3600)))),
        ("wrong issuer", rs(&with(&good, "iss", json!("https://sts.windows.net/evil/")))),
        ("wrong audience", rs(&with(&good, "aud", json!("api://something-else")))),
        ("wrong directory claim", rs(&with(&good, "tid", json!(DIR_B)))),
        (
            "no expiry",
            rs(&good
                .as_object()
                .map(|o| {
                    let mut o = o.clone();
                    o.remove("exp");
                    Value::Object(o)
                })
                .unwrap()),
        ),
        // Another tenant's token: valid for `entra-b`'s directory, not this one's.
        ("another tenant's token", rs(&entra_claims(DIR_B))),
        // Signed by a key the provider never published, under a published key id.
        ("foreign key", sign(Algorithm::RS256, "rsa2.key.pem", Some("k1"), &good)),
        // HS256 keyed with the RSA public key: algorithm confusion.
        ("HS256 with the public key", {
            let mut h = Header::new(Algorithm::HS256);
            h.kid = Some("k1".into());
            encode(&h, &good, &EncodingKey::from_secret(fixture("rsa1.pub.pem").as_bytes())).unwrap()
        }),
        // alg: none, no signature.
        ("alg none", {
            let b64 = |v: &Value| {
                use base64::Engine as _;
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
            };
            format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(&good))
        }),
        ("garbage", "a.b.c".to_owned()),
    ];
    for (what, token) in &refused {
        assert_eq!(status(&gw, "entra", token).await, 401, "{what}");
    }
    assert_eq!(status(&gw, "entra-b", &rs(&entra_claims(DIR_B))).await, 200, "the other tenant's own token");
    // All those checks needed one fetch of the keys: the JWKS is cached.
    assert_eq!(idp.fetches.load(Ordering::SeqCst), 1, "one key fetch for both tenants and every check");
}

#[tokio::test]
async fn a_key_rollover_refreshes_the_jwks_once() {
    let idp = idp(json!({"keys": [jwk(Algorithm::RS256, "rsa1.key.pem", "k1")]})).await;
    let gw = serve(&config(&idp.url));
    let claims = entra_claims(DIR_A);
    assert_eq!(status(&gw, "entra", &sign(Algorithm::RS256, "rsa1.key.pem", Some("k1"), &claims)).await, 200);
    assert_eq!(idp.fetches.load(Ordering::SeqCst), 1);
    // The provider rolls over to a new key; a token signed with it names a key id not cached yet.
    *idp.keys.lock().unwrap() = json!({"keys": [jwk(Algorithm::RS256, "rsa2.key.pem", "k2")]});
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let rolled = sign(Algorithm::RS256, "rsa2.key.pem", Some("k2"), &claims);
    assert_eq!(status(&gw, "entra", &rolled).await, 200, "the unknown kid made the gateway refresh");
    assert_eq!(idp.fetches.load(Ordering::SeqCst), 2);
    // Forged key ids cannot make the gateway hammer the provider: at most one fetch per interval.
    let forged = sign(Algorithm::RS256, "rsa2.key.pem", Some("nope"), &claims);
    for _ in 0..5 {
        assert_eq!(status(&gw, "entra", &forged).await, 401);
    }
    assert_eq!(idp.fetches.load(Ordering::SeqCst), 2, "no fetch within the refresh interval");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..5 {
        assert_eq!(status(&gw, "entra", &forged).await, 401);
    }
    assert_eq!(idp.fetches.load(Ordering::SeqCst), 3, "exactly one more fetch after the interval");
    assert_eq!(status(&gw, "entra", &rolled).await, 200);
}

#[tokio::test]
async fn oidc_issuers_are_found_by_discovery() {
    let idp = idp(json!({"keys": [jwk(Algorithm::ES256, "ec1.key.pem", "e1")]})).await;
    let gw = serve(&config(&idp.url));
    let now = get_current_timestamp();
    let claims = json!({"iss": idp.url, "aud": "scim-oidc", "sub": "okta", "exp": now + 600});
    assert_eq!(status(&gw, "oidc", &sign(Algorithm::ES256, "ec1.key.pem", Some("e1"), &claims)).await, 200);
    // The pinned algorithm is ES256: an RS256 token from the same issuer is refused.
    let rs = sign(Algorithm::RS256, "rsa1.key.pem", Some("e1"), &claims);
    assert_eq!(status(&gw, "oidc", &rs).await, 401);
    assert_eq!(
        status(&gw, "oidc", &sign(Algorithm::ES256, "ec1.key.pem", Some("e1"), &with(&claims, "aud", json!("x"))))
            .await,
        401
    );
}

/// POSTs a token request; returns status and JSON body.
async fn token_request(gw: &Gateway, tenant: &str, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> (u16, Value) {
    let mut req = reqwest::Client::new().post(format!("{}/{tenant}/oauth/token", gw.url)).form(form);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    if status == 200 {
        assert_eq!(r.headers()["cache-control"], "no-store");
    }
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_oauth_endpoint_issues_tokens_that_open_only_their_tenant() {
    let idp = idp(json!({"keys": []})).await;
    let gw = serve(&config(&idp.url));
    let grant = [("grant_type", "client_credentials")];
    let (s, body) = token_request(
        &gw,
        "issuing",
        &[("grant_type", "client_credentials"), ("client_id", "entra-client"), ("client_secret", "client-secret")],
        None,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let token = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(status(&gw, "issuing", &token).await, 200);
    assert_eq!(status(&gw, "statics", &token).await, 401, "an issued token opens only its own tenant");
    // HTTP Basic client authentication works too.
    let (s, body) = token_request(&gw, "issuing", &grant, Some(("entra-client", "client-secret"))).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(status(&gw, "issuing", body["access_token"].as_str().unwrap()).await, 200);
    // Refusals, in RFC 6749's shape.
    let (s, body) = token_request(&gw, "issuing", &grant, Some(("entra-client", "wrong"))).await;
    assert_eq!((s, body["error"].as_str()), (401, Some("invalid_client")));
    let (s, body) = token_request(&gw, "statics", &grant, Some(("entra-client", "client-secret"))).await;
    assert_eq!((s, body["error"].as_str()), (401, Some("invalid_client")), "a tenant without the endpoint");
    let (s, body) = token_request(&gw, "nobody", &grant, Some(("entra-client", "client-secret"))).await;
    assert_eq!((s, body["error"].as_str()), (401, Some("invalid_client")), "an unknown tenant");
    let (s, body) =
        token_request(&gw, "issuing", &[("grant_type", "password")], Some(("entra-client", "client-secret"))).await;
    assert_eq!((s, body["error"].as_str()), (400, Some("unsupported_grant_type")));
    // A forged token with the tenant's issuer name but another key.
    let now = get_current_timestamp();
    let forged = encode(
        &Header::new(Algorithm::HS256),
        &json!({"iss": "urn:scimbridge:tenant:issuing", "aud": "urn:scimbridge:tenant:issuing", "sub": "entra-client", "exp": now + 60}),
        &EncodingKey::from_secret(b"not-the-signing-secret-of-this-tenant-at-all"),
    )
    .unwrap();
    assert_eq!(status(&gw, "issuing", &forged).await, 401);
}
