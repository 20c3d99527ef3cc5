//! Compiles a tenant file's `auth:` section into its [`Authenticator`]: hashes parsed, expiry times
//! read, presets expanded, keys decoded and JWKS caches attached, all once at load. Every problem
//! is reported, with the key it concerns.

use std::str::FromStr;
use std::time::Duration;

use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::spec::{AuthSpec, JwtPreset, JwtSpec, OAuthSpec};
use crate::auth::issuer::{self, Client, TokenIssuer};
use crate::auth::jwks::{JwksSource, Refresh};
use crate::auth::jwt::{self, JwtSettings, JwtVerifier, KeySource};
use crate::auth::{Authenticator, StaticToken, StaticTokens, parse_hash};

/// Bounds on an issued token's lifetime: Entra expects 60 to 360 minutes; shorter is allowed.
const LIFETIME_RANGE: std::ops::RangeInclusive<u64> = 60..=86_400;

/// One problem: where (a path like `auth.jwt[0].issuer`) and what.
pub type AuthProblem = (String, String);

/// Builds a tenant's authenticator, or every problem with its `auth:` section.
pub fn compile(tenant: &str, spec: &AuthSpec) -> Result<Authenticator, Vec<AuthProblem>> {
    let mut problems = Vec::new();
    let mut tokens = Vec::new();
    for (i, t) in spec.tokens.iter().enumerate() {
        let at = format!("auth.tokens[{i}]");
        let hash = parse_hash(&t.sha256).map_err(|m| problems.push((format!("{at}.sha256"), m))).ok();
        let expires = match &t.expires {
            None => None,
            Some(s) => match OffsetDateTime::parse(s, &Rfc3339) {
                Ok(when) => Some(u64::try_from(when.unix_timestamp()).unwrap_or(0)),
                Err(_) => {
                    problems.push((
                        format!("{at}.expires"),
                        format!("`{s}` is not an RFC 3339 time (2027-01-31T00:00:00Z)"),
                    ));
                    None
                }
            },
        };
        if let Some(hash) = hash {
            tokens.push(StaticToken { label: t.label.clone(), hash, expires });
        }
    }
    let mut verifiers = Vec::new();
    for (i, j) in spec.jwt.iter().enumerate() {
        match jwt_settings(j) {
            Ok(s) => verifiers.push(JwtVerifier::new(s)),
            Err((key, m)) => problems.push((format!("auth.jwt[{i}]{key}"), m)),
        }
    }
    let token_issuer = match &spec.oauth {
        None => None,
        Some(o) => match token_issuer(tenant, o) {
            Ok(i) => Some(i),
            Err((key, m)) => {
                problems.push((format!("auth.oauth{key}"), m));
                None
            }
        },
    };
    let a = Authenticator { tokens: StaticTokens::new(tokens), jwt: verifiers, issuer: token_issuer };
    if spec.tokens.is_empty() && spec.jwt.is_empty() && spec.oauth.is_none() {
        problems.push(("auth".into(), "a tenant needs at least one of `tokens`, `jwt` or `oauth`".into()));
    }
    if problems.is_empty() { Ok(a) } else { Err(problems) }
}

type Problem = (&'static str, String);

fn jwt_settings(j: &JwtSpec) -> Result<JwtSettings, Problem> {
    let mut issuers = j.issuer.as_ref().map(|i| i.to_vec()).unwrap_or_default();
    let mut audiences = j.audience.as_ref().map(|a| a.to_vec()).unwrap_or_default();
    let mut claims = j.claims.clone();
    let mut algorithm = j.algorithm.clone();
    let mut source = None;
    match j.preset {
        Some(JwtPreset::Entra) => {
            let dir = j
                .entra_tenant_id
                .as_deref()
                .ok_or((".entra_tenant_id", "the entra preset needs the customer's directory (tenant) id".into()))?;
            if uuid::Uuid::parse_str(dir).is_err() {
                return Err((".entra_tenant_id", format!("`{dir}` is not a directory id (a GUID)")));
            }
            if issuers.is_empty() {
                issuers = vec![jwt::entra_issuer(dir), jwt::entra_issuer_v2(dir)];
            }
            if audiences.is_empty() {
                audiences = vec![jwt::ENTRA_AUDIENCE.to_owned()];
            }
            claims.entry("tid".into()).or_insert_with(|| dir.to_owned());
            algorithm.get_or_insert_with(|| "RS256".into());
            if j.jwks_url.is_none() && j.public_key_pem.is_none() {
                source = Some(JwksSource::Url(jwt::entra_jwks_url(dir)));
            }
        }
        Some(JwtPreset::Oidc) => {
            algorithm.get_or_insert_with(|| "RS256".into());
            if j.jwks_url.is_none() && j.public_key_pem.is_none() && j.secret.is_none() {
                let issuer = issuers.first().ok_or((".issuer", "the oidc preset needs the issuer".into()))?;
                check_fetch_url(issuer).map_err(|m| (".issuer", m))?;
                source = Some(JwksSource::Discovery { issuer: issuer.clone() });
            }
        }
        None => {
            if j.entra_tenant_id.is_some() {
                return Err((".entra_tenant_id", "only the entra preset takes `entra_tenant_id`".into()));
            }
        }
    }
    if issuers.is_empty() {
        return Err((".issuer", "a JWT verifier needs the issuer (`iss`) it trusts".into()));
    }
    if audiences.is_empty() {
        return Err((".audience", "a JWT verifier needs the audience (`aud`) tokens must carry".into()));
    }
    let alg_name = algorithm.ok_or((".algorithm", "pin the one algorithm accepted, e.g. `RS256`".into()))?;
    let alg = Algorithm::from_str(&alg_name).map_err(|_| (".algorithm", format!("unknown algorithm `{alg_name}`")))?;
    let refresh = Refresh {
        max_age: Duration::from_secs(j.jwks_max_age_s.unwrap_or(3600)),
        min_interval: Duration::from_secs(j.jwks_min_refresh_s.unwrap_or(30)),
    };
    let given = [j.jwks_url.is_some(), j.public_key_pem.is_some(), j.secret.is_some()].iter().filter(|b| **b).count();
    if given > 1 {
        return Err(("", "give only one of `jwks_url`, `public_key_pem` and `secret`".into()));
    }
    let keys = if let Some(url) = &j.jwks_url {
        check_fetch_url(&url.0).map_err(|m| (".jwks_url", m))?;
        jwt::jwks(JwksSource::Url(url.0.clone()), refresh)
    } else if let Some(pem) = &j.public_key_pem {
        let pem = pem.0.as_bytes();
        let key = match alg.family() {
            AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(pem),
            AlgorithmFamily::Ec => DecodingKey::from_ec_pem(pem),
            AlgorithmFamily::Ed => DecodingKey::from_ed_pem(pem),
            _ => return Err((".public_key_pem", format!("{alg_name} takes a `secret`, not a public key"))),
        };
        KeySource::Fixed(key.map_err(|_| (".public_key_pem", format!("not a PEM public key for {alg_name}")))?)
    } else if let Some(secret) = &j.secret {
        if alg.family() != AlgorithmFamily::Hmac {
            return Err((".secret", format!("{alg_name} takes a public key or a JWKS, not a secret")));
        }
        if secret.0.len() < issuer::MIN_SECRET_BYTES {
            return Err((".secret", format!("an HMAC secret needs at least {} bytes", issuer::MIN_SECRET_BYTES)));
        }
        KeySource::Fixed(DecodingKey::from_secret(secret.0.as_bytes()))
    } else if let Some(source) = source {
        jwt::jwks(source, refresh)
    } else {
        return Err(("", "say where the keys are: `jwks_url`, `public_key_pem` or `secret`".into()));
    };
    Ok(JwtSettings {
        label: j.label.clone(),
        algorithm: alg,
        issuers,
        audiences,
        leeway_s: j.leeway_s.unwrap_or(60),
        claims,
        subject_claim: j.subject_claim.clone().unwrap_or_else(|| "sub".into()),
        keys,
    })
}

/// Keys are fetched over HTTPS; plain HTTP only on the loopback interface (tests, sidecars).
fn check_fetch_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let loopback = matches!(parsed.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(format!("`{url}` must be https (http only for localhost)")),
    }
}

fn token_issuer(tenant: &str, o: &OAuthSpec) -> Result<TokenIssuer, Problem> {
    if o.signing_secret.0.len() < issuer::MIN_SECRET_BYTES {
        return Err((".signing_secret", format!("needs at least {} bytes", issuer::MIN_SECRET_BYTES)));
    }
    if o.previous_signing_secrets.iter().any(|s| s.0.len() < issuer::MIN_SECRET_BYTES) {
        return Err((".previous_signing_secrets", format!("each needs at least {} bytes", issuer::MIN_SECRET_BYTES)));
    }
    if !LIFETIME_RANGE.contains(&o.token_lifetime_s) {
        return Err((
            ".token_lifetime_s",
            format!("must be between {} and {}", LIFETIME_RANGE.start(), LIFETIME_RANGE.end()),
        ));
    }
    if o.clients.is_empty() {
        return Err((".clients", "list at least one client".into()));
    }
    let mut clients = Vec::new();
    for c in &o.clients {
        if clients.iter().any(|k: &Client| k.client_id == c.client_id) {
            return Err((".clients", format!("client id `{}` is listed twice", c.client_id)));
        }
        let secret_hash =
            parse_hash(&c.secret_sha256).map_err(|m| (".clients", format!("client `{}`: {m}", c.client_id)))?;
        let label = c.label.clone().unwrap_or_else(|| c.client_id.clone());
        clients.push(Client { client_id: c.client_id.clone(), secret_hash, label });
    }
    let previous: Vec<String> = o.previous_signing_secrets.iter().map(|s| s.0.clone()).collect();
    Ok(TokenIssuer::new(tenant, &o.signing_secret.0, &previous, Duration::from_secs(o.token_lifetime_s), clients))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> AuthSpec {
        crate::config::parse_yaml(yaml).unwrap()
    }

    #[test]
    fn presets_fill_in_issuer_audience_and_keys() {
        let a = compile(
            "t",
            &spec("jwt:\n  - label: entra\n    preset: entra\n    entra_tenant_id: 6f1b6c4e-2f8e-4d7a-9a52-1e0a3f3b2c11\n"),
        )
        .unwrap();
        assert!(a.jwt[0].trusts_issuer("https://sts.windows.net/6f1b6c4e-2f8e-4d7a-9a52-1e0a3f3b2c11/"));
        assert!(!a.jwt[0].trusts_issuer("https://sts.windows.net/other/"));
    }

    #[test]
    fn reports_every_problem_with_its_key() {
        let e = compile(
            "t",
            &spec(
                "tokens:\n  - label: a\n    sha256: nothex\n    expires: tomorrow\n\
                 jwt:\n  - label: x\n    issuer: https://i/\n    audience: a\n    algorithm: RS256\n    secret: short\n\
                 \x20 - label: y\n    preset: oidc\n    issuer: http://idp.example/\n    audience: a\n\
                 oauth:\n  signing_secret: short\n  clients: []\n",
            ),
        )
        .unwrap_err();
        let keys: Vec<&str> = e.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "auth.tokens[0].sha256",
                "auth.tokens[0].expires",
                "auth.jwt[0].secret",
                "auth.jwt[1].issuer",
                "auth.oauth.signing_secret"
            ]
        );
        assert!(compile("t", &spec("tokens: []\n")).is_err());
    }
}
