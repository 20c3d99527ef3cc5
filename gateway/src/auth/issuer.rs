//! The gateway as an OAuth 2.0 authorization server for one grant only: client credentials
//! (RFC 6749 §4.4). A client trades its id and secret at `/{tenant}/oauth/token` for a short-lived
//! JWT signed by the gateway, so the long-lived secret crosses the wire once per token lifetime
//! instead of on every request.
//!
//! Tokens are HS256 with the tenant's signing secret; `iss` and `aud` name the tenant, so a token
//! issued for one tenant never opens another, even if two tenants were given the same secret.
//! A previous secret may stay configured to verify tokens issued before a rotation.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::token::{TokenHash, hash_token};
use super::{Principal, Rejection};

/// Signing secrets shorter than this are refused at load: HS256 needs at least 256 bits.
pub const MIN_SECRET_BYTES: usize = 32;

/// A client allowed to ask for tokens.
#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: String,
    pub secret_hash: TokenHash,
    /// Name in logs and audit (defaults to the client id).
    pub label: String,
}

struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl SigningKey {
    fn new(secret: &str) -> Self {
        // The key id reveals nothing useful about the secret: a truncated hash of a ≥256-bit secret.
        let kid = hex::encode(&Sha256::digest(format!("scimbridge-kid:{secret}").as_bytes())[..8]);
        Self {
            kid,
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
        }
    }
}

/// A token issued to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub access_token: String,
    pub expires_in: u64,
}

/// Why a token request is refused (RFC 6749 §5.2 error codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IssueError {
    #[error("invalid_client")]
    InvalidClient,
    #[error("server_error")]
    Signing,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: String,
    iat: u64,
    exp: u64,
    jti: String,
}

/// The token endpoint of one tenant.
pub struct TokenIssuer {
    /// `iss` and `aud` of every token: `urn:scimbridge:tenant:<id>`.
    name: String,
    keys: Vec<SigningKey>,
    lifetime: Duration,
    clients: Vec<Client>,
    validation: Validation,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("name", &self.name)
            .field("clients", &self.clients.len())
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl TokenIssuer {
    /// An issuer for tenant `tenant`, signing with `secret` and still accepting tokens signed with
    /// `previous` secrets.
    pub fn new(tenant: &str, secret: &str, previous: &[String], lifetime: Duration, clients: Vec<Client>) -> Self {
        let name = format!("urn:scimbridge:tenant:{tenant}");
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&name]);
        validation.set_audience(&[&name]);
        validation.leeway = 5;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let keys = std::iter::once(secret).chain(previous.iter().map(String::as_str)).map(SigningKey::new).collect();
        Self { name, keys, lifetime, clients, validation }
    }

    /// The `iss` of this tenant's tokens.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Issues a token for a client presenting `client_id` and `secret`, at `now` (Unix seconds).
    /// Every client is compared, in constant time, whatever matches.
    pub fn issue(&self, client_id: &str, secret: &str, now: u64) -> Result<Issued, IssueError> {
        let presented = hash_token(secret);
        let mut found = None;
        for c in &self.clients {
            let id_ok = c.client_id.as_bytes().ct_eq(client_id.as_bytes());
            let secret_ok = c.secret_hash.ct_eq(&presented);
            if bool::from(id_ok & secret_ok) {
                found = Some(c);
            }
        }
        let client = found.ok_or(IssueError::InvalidClient)?;
        let key = self.keys.first().ok_or(IssueError::Signing)?;
        let lifetime = self.lifetime.as_secs();
        let claims = Claims {
            iss: self.name.clone(),
            aud: self.name.clone(),
            sub: client.client_id.clone(),
            iat: now,
            exp: now + lifetime,
            jti: uuid::Uuid::new_v4().simple().to_string(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key.kid.clone());
        let access_token = jsonwebtoken::encode(&header, &claims, &key.encoding).map_err(|_| IssueError::Signing)?;
        Ok(Issued { access_token, expires_in: lifetime })
    }

    /// Verifies a token this issuer issued; the client must still be configured.
    pub fn verify(&self, token: &str, header: &jsonwebtoken::Header) -> Result<Principal, Rejection> {
        if header.alg != Algorithm::HS256 {
            return Err(Rejection::Algorithm);
        }
        let key =
            self.keys.iter().find(|k| header.kid.as_deref() == Some(k.kid.as_str())).ok_or(Rejection::UnknownKey)?;
        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &self.validation)
            .map_err(|e| super::jwt::rejection(e.kind()))?;
        // A client removed from the file loses its tokens at once, not when they expire.
        let client = self.clients.iter().find(|c| c.client_id == data.claims.sub).ok_or(Rejection::UnknownClient)?;
        Ok(Principal { label: client.label.clone(), subject: Some(client.client_id.clone()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::get_current_timestamp;

    fn issuer(tenant: &str, secret: &str, previous: &[String]) -> TokenIssuer {
        let clients =
            vec![Client { client_id: "entra".into(), secret_hash: hash_token("s3cret"), label: "entra-app".into() }];
        TokenIssuer::new(tenant, secret, previous, Duration::from_secs(3600), clients)
    }

    fn verify(i: &TokenIssuer, token: &str) -> Result<Principal, Rejection> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Rejection::Malformed)?;
        i.verify(token, &header)
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn issues_to_known_clients_and_verifies_its_own_tokens() {
        let now = get_current_timestamp();
        let i = issuer("acme", SECRET, &[]);
        assert_eq!(i.issue("entra", "wrong", now), Err(IssueError::InvalidClient));
        assert_eq!(i.issue("other", "s3cret", now), Err(IssueError::InvalidClient));
        let t = i.issue("entra", "s3cret", now).unwrap();
        assert_eq!(t.expires_in, 3600);
        let p = verify(&i, &t.access_token).unwrap();
        assert_eq!((p.label.as_str(), p.subject.as_deref()), ("entra-app", Some("entra")));
        // Expired an hour ago.
        let old = i.issue("entra", "s3cret", now - 7200).unwrap();
        assert_eq!(verify(&i, &old.access_token), Err(Rejection::Expired));
    }

    #[test]
    fn tokens_stay_with_their_tenant_and_survive_a_rotation() {
        let now = get_current_timestamp();
        let acme = issuer("acme", SECRET, &[]);
        let t = acme.issue("entra", "s3cret", now).unwrap().access_token;
        // Another tenant with the very same secret still refuses it: iss/aud name the tenant.
        assert_eq!(verify(&issuer("globex", SECRET, &[]), &t), Err(Rejection::Issuer));
        // After rotation the old secret verifies until dropped.
        let rotated = issuer("acme", "fedcba9876543210fedcba9876543210", &[SECRET.into()]);
        assert!(verify(&rotated, &t).is_ok());
        let dropped = issuer("acme", "fedcba9876543210fedcba9876543210", &[]);
        assert_eq!(verify(&dropped, &t), Err(Rejection::UnknownKey));
    }
}
