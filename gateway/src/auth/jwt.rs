//! JWT bearer tokens from an identity provider: signature by a pinned algorithm with keys from a
//! JWKS (cached, see [`super::jwks`]), a PEM public key or a shared secret; issuer, audience,
//! expiry and not-before with a small leeway; and exact values of chosen claims (Entra's `tid`).
//!
//! Presets fill these in for Entra ID's own token and for any OpenID Connect issuer; a verifier is
//! built once at configuration load.

use std::collections::BTreeMap;
use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::jwks::{Jwks, JwksError, JwksSource, Refresh};
use super::{Principal, Rejection};

/// The audience of the token Entra ID sends to every non-gallery app when its Secret Token is left
/// blank (entra-scim-behaviour.md, b8).
pub const ENTRA_AUDIENCE: &str = "8adf8e6e-67b2-4cf2-a259-e3dc5476c621";

/// Entra ID's v1 token issuer for a directory (tenant) id.
pub fn entra_issuer(directory: &str) -> String {
    format!("https://sts.windows.net/{directory}/")
}

/// Entra ID's v2 token issuer for a directory id.
pub fn entra_issuer_v2(directory: &str) -> String {
    format!("https://login.microsoftonline.com/{directory}/v2.0")
}

/// Entra ID's signing keys for a directory id.
pub fn entra_jwks_url(directory: &str) -> String {
    format!("https://login.microsoftonline.com/{directory}/discovery/v2.0/keys")
}

/// Where a verifier's keys come from.
#[derive(Clone)]
pub enum KeySource {
    /// A fixed key: a PEM public key, or an HMAC secret.
    Fixed(DecodingKey),
    /// A provider's key set, fetched and cached.
    Jwks(Arc<Jwks>),
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fixed(_) => f.write_str("Fixed(..)"),
            Self::Jwks(j) => j.fmt(f),
        }
    }
}

/// A compiled verifier's settings, all resolved at load.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// Name in logs and audit.
    pub label: String,
    pub algorithm: Algorithm,
    /// Accepted `iss` values (at least one).
    pub issuers: Vec<String>,
    /// Accepted `aud` values (at least one).
    pub audiences: Vec<String>,
    /// Seconds of clock skew tolerated on `exp` and `nbf`.
    pub leeway_s: u64,
    /// Claims that must have exactly these string values.
    pub claims: BTreeMap<String, String>,
    /// The claim that names the caller in logs and audit.
    pub subject_claim: String,
    pub keys: KeySource,
}

/// Builds a [`KeySource`] for a JWKS URL or an OpenID issuer, sharing caches process-wide.
pub fn jwks(source: JwksSource, refresh: Refresh) -> KeySource {
    KeySource::Jwks(Jwks::shared(source, refresh))
}

/// Verifies tokens for one trusted issuer.
#[derive(Debug)]
pub struct JwtVerifier {
    settings: JwtSettings,
    validation: Validation,
}

impl JwtVerifier {
    /// A verifier for `settings`.
    pub fn new(settings: JwtSettings) -> Self {
        let mut validation = Validation::new(settings.algorithm);
        validation.set_issuer(&settings.issuers);
        validation.set_audience(&settings.audiences);
        validation.leeway = settings.leeway_s;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        Self { settings, validation }
    }

    /// This verifier's label.
    pub fn label(&self) -> &str {
        &self.settings.label
    }

    /// Whether this verifier is the one for tokens claiming issuer `iss`.
    pub fn trusts_issuer(&self, iss: &str) -> bool {
        self.settings.issuers.iter().any(|i| i == iss)
    }

    /// Checks `token` completely: algorithm, key, signature, then the claims.
    pub async fn verify(&self, token: &str, header: &jsonwebtoken::Header) -> Result<Principal, Rejection> {
        if header.alg != self.settings.algorithm {
            return Err(Rejection::Algorithm);
        }
        let keys = match &self.settings.keys {
            KeySource::Fixed(k) => vec![k.clone()],
            KeySource::Jwks(j) => match j.keys_for(header.kid.as_deref(), self.settings.algorithm.family()).await {
                Ok(k) => k,
                Err(JwksError::UnknownKey(_)) => return Err(Rejection::UnknownKey),
                Err(JwksError::Unavailable(_)) => return Err(Rejection::KeysUnavailable),
            },
        };
        let mut last = Rejection::Signature;
        for key in &keys {
            match jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, key, &self.validation) {
                Ok(data) => return self.principal(&data.claims),
                Err(e) => {
                    last = rejection(e.kind());
                    if last != Rejection::Signature {
                        break; // the signature held: the claims are wrong whichever key is tried
                    }
                }
            }
        }
        Err(last)
    }

    fn principal(&self, claims: &serde_json::Map<String, Value>) -> Result<Principal, Rejection> {
        for (name, want) in &self.settings.claims {
            if claims.get(name).and_then(Value::as_str) != Some(want.as_str()) {
                return Err(Rejection::Claim(name.clone()));
            }
        }
        let subject = claims.get(&self.settings.subject_claim).and_then(Value::as_str).map(|s| {
            // Bounded: it lands in logs and audit records.
            s.chars().take(128).collect()
        });
        Ok(Principal { label: self.settings.label.clone(), subject })
    }
}

/// The rejection a jsonwebtoken error stands for.
pub(super) fn rejection(kind: &ErrorKind) -> Rejection {
    match kind {
        ErrorKind::ExpiredSignature => Rejection::Expired,
        ErrorKind::ImmatureSignature => Rejection::NotYetValid,
        ErrorKind::InvalidIssuer => Rejection::Issuer,
        ErrorKind::InvalidAudience => Rejection::Audience,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => Rejection::Algorithm,
        ErrorKind::MissingRequiredClaim(c) | ErrorKind::InvalidClaimFormat(c) => Rejection::Claim(c.clone()),
        ErrorKind::InvalidSignature => Rejection::Signature,
        _ => Rejection::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp};
    use serde_json::json;

    const RSA_PRIVATE: &str = include_str!("../../../tests/fixtures/jwt/rsa1.key.pem");
    const RSA_PUBLIC: &str = include_str!("../../../tests/fixtures/jwt/rsa1.pub.pem");

    fn verifier(claims: BTreeMap<String, String>) -> JwtVerifier {
        JwtVerifier::new(JwtSettings {
            label: "idp".into(),
            algorithm: Algorithm::RS256,
            issuers: vec!["https://idp.example/".into()],
            audiences: vec!["scim".into()],
            leeway_s: 5,
            claims,
            subject_claim: "sub".into(),
            keys: KeySource::Fixed(DecodingKey::from_rsa_pem(RSA_PUBLIC.as_bytes()).unwrap()),
        })
    }

    fn sign(claims: Value) -> String {
        encode(&Header::new(Algorithm::RS256), &claims, &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap())
            .unwrap()
    }

    async fn check(v: &JwtVerifier, token: &str) -> Result<Principal, Rejection> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Rejection::Malformed)?;
        v.verify(token, &header).await
    }

    #[tokio::test]
    async fn accepts_good_tokens_and_names_what_is_wrong_with_bad_ones() {
        let now = get_current_timestamp();
        let v = verifier(BTreeMap::from([("tid".into(), "t1".into())]));
        let good = json!({"iss": "https://idp.example/", "aud": "scim", "exp": now + 60, "sub": "entra", "tid": "t1"});
        let p = check(&v, &sign(good.clone())).await.unwrap();
        assert_eq!((p.label.as_str(), p.subject.as_deref()), ("idp", Some("entra")));
        let with = |k: &str, val: Value| {
            let mut c = good.clone();
            c[k] = val;
            sign(c)
        };
        assert_eq!(check(&v, &with("exp", json!(now - 60))).await, Err(Rejection::Expired));
        // Inside the leeway an expired token still passes.
        assert!(check(&v, &with("exp", json!(now - 2))).await.is_ok());
        assert_eq!(check(&v, &with("nbf", json!(now + 60))).await, Err(Rejection::NotYetValid));
        assert_eq!(check(&v, &with("iss", json!("https://other/"))).await, Err(Rejection::Issuer));
        assert_eq!(check(&v, &with("aud", json!("other"))).await, Err(Rejection::Audience));
        assert_eq!(check(&v, &with("tid", json!("t2"))).await, Err(Rejection::Claim("tid".into())));
        let mut no_exp = good.clone();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert_eq!(check(&v, &sign(no_exp)).await, Err(Rejection::Claim("exp".into())));
    }

    #[tokio::test]
    async fn refuses_algorithm_confusion_and_tampering() {
        let now = get_current_timestamp();
        let v = verifier(BTreeMap::new());
        let claims = json!({"iss": "https://idp.example/", "aud": "scim", "exp": now + 60});
        // HS256 "signed" with the RSA public key as the secret: the classic confusion attack.
        let hs =
            encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(RSA_PUBLIC.as_bytes())).unwrap();
        assert_eq!(check(&v, &hs).await, Err(Rejection::Algorithm));
        // alg none: jsonwebtoken does not even parse such a header.
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", hs.split('.').nth(1).unwrap());
        assert_eq!(check(&v, &none).await, Err(Rejection::Malformed));
        let good = sign(claims);
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged = jsonwebtoken::crypto::sign(b"x", &EncodingKey::from_secret(b"k"), Algorithm::HS256).unwrap();
        parts[2] = &forged;
        assert_eq!(check(&v, &parts.join(".")).await, Err(Rejection::Signature));
    }
}
