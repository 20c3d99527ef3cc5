//! Who may call a tenant. Each tenant has an [`Authenticator`], built once at configuration load,
//! that accepts any mix of: static bearer tokens (`token`), JWTs from trusted identity providers
//! (`jwt`, keys from `jwks`), and JWTs the gateway issued itself at the tenant's OAuth token
//! endpoint (`issuer`).
//!
//! A refusal carries its reason for logs and metrics, never for the client: every refusal answers
//! the same 401, so a caller cannot tell a wrong tenant from a wrong token.

pub mod issuer;
pub mod jwks;
pub mod jwt;
pub mod token;

use std::time::{SystemTime, UNIX_EPOCH};

pub use token::{StaticToken, StaticTokens, TokenHash, generate_secret, hash_token, parse_hash};

use issuer::TokenIssuer;
use jwt::JwtVerifier;
use token::TokenRejection;

/// The longest bearer token looked at; real JWTs are a few kilobytes at most.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Who a request authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's label, the identity provider's label, or the OAuth client's label: bounded by
    /// configuration, so it may key rate limits and metrics.
    pub label: String,
    /// The JWT subject (or OAuth client id), for logs and audit.
    pub subject: Option<String>,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("no token")]
    Missing,
    #[error("unknown token")]
    Unknown,
    #[error("token expired")]
    Expired,
    #[error("token not valid yet")]
    NotYetValid,
    #[error("token is not a well-formed JWT")]
    Malformed,
    #[error("token signed with an algorithm this tenant does not accept")]
    Algorithm,
    #[error("token signed by an unknown key")]
    UnknownKey,
    #[error("token signature does not verify")]
    Signature,
    #[error("token from an issuer this tenant does not trust")]
    Issuer,
    #[error("token for another audience")]
    Audience,
    #[error("token claim `{0}` missing or not the required value")]
    Claim(String),
    #[error("token issued to a client that is no longer configured")]
    UnknownClient,
    #[error("the identity provider's signing keys are unavailable")]
    KeysUnavailable,
}

impl Rejection {
    /// A short fixed name, for metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Unknown => "unknown",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::Malformed => "malformed",
            Self::Algorithm => "algorithm",
            Self::UnknownKey => "unknown_key",
            Self::Signature => "signature",
            Self::Issuer => "issuer",
            Self::Audience => "audience",
            Self::Claim(_) => "claim",
            Self::UnknownClient => "unknown_client",
            Self::KeysUnavailable => "keys_unavailable",
        }
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

/// A tenant's accepted credentials.
#[derive(Debug, Default)]
pub struct Authenticator {
    pub tokens: StaticTokens,
    pub jwt: Vec<JwtVerifier>,
    pub issuer: Option<TokenIssuer>,
}

#[derive(serde::Deserialize)]
struct Peek {
    #[serde(default)]
    iss: Option<String>,
}

impl Authenticator {
    /// Whether this tenant accepts any credential at all.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty() && self.jwt.is_empty() && self.issuer.is_none()
    }

    /// Checks a presented bearer token.
    pub async fn authenticate(&self, presented: &str) -> Result<Principal, Rejection> {
        if presented.is_empty() {
            return Err(Rejection::Missing);
        }
        if presented.len() > MAX_TOKEN_BYTES {
            return Err(Rejection::Malformed);
        }
        // Static tokens first, always: a constant-time comparison whatever the token looks like.
        match self.tokens.verify(presented, now()) {
            Ok(t) => return Ok(Principal { label: t.label.clone(), subject: None }),
            Err(TokenRejection::Expired) => return Err(Rejection::Expired),
            Err(TokenRejection::Unknown) => {}
        }
        if self.jwt.is_empty() && self.issuer.is_none() {
            return Err(Rejection::Unknown);
        }
        // The unverified `iss` only chooses which verifier checks the token; that verifier then
        // checks everything, `iss` included.
        let peek = jsonwebtoken::dangerous::insecure_decode::<Peek>(presented).map_err(|_| Rejection::Malformed)?;
        let iss = peek.claims.iss.ok_or(Rejection::Issuer)?;
        if let Some(issuer) = self.issuer.as_ref().filter(|i| i.name() == iss) {
            return issuer.verify(presented, &peek.header);
        }
        let verifier = self.jwt.iter().find(|v| v.trusts_issuer(&iss)).ok_or(Rejection::Issuer)?;
        verifier.verify(presented, &peek.header).await
    }
}

/// The token of an `Authorization: Bearer …` header value (scheme case-insensitive).
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_headers() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
    }

    #[tokio::test]
    async fn static_tokens_then_jwts() {
        let a = Authenticator {
            tokens: StaticTokens::new(vec![StaticToken { label: "t".into(), hash: hash_token("s"), expires: None }]),
            ..Default::default()
        };
        assert_eq!(a.authenticate("s").await.map(|p| p.label), Ok("t".into()));
        assert_eq!(a.authenticate("x").await, Err(Rejection::Unknown));
        assert_eq!(a.authenticate("").await, Err(Rejection::Missing));
        assert_eq!(a.authenticate(&"a".repeat(MAX_TOKEN_BYTES + 1)).await, Err(Rejection::Malformed));
    }
}
