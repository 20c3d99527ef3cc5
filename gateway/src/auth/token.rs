//! Static bearer tokens: stored as SHA-256 hashes, compared in constant time, each with a label
//! for logs and an optional expiry, several per tenant so secrets rotate without downtime.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A token's stored form: the SHA-256 of its bytes.
pub type TokenHash = [u8; 32];

/// SHA-256 of a presented token.
pub fn hash_token(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// Parses a stored hash: 64 hex digits, optionally prefixed `sha256:`.
pub fn parse_hash(s: &str) -> Result<TokenHash, String> {
    let hex_part = s.strip_prefix("sha256:").unwrap_or(s);
    let bytes = hex::decode(hex_part).map_err(|_| "a token hash must be 64 hex digits".to_owned())?;
    bytes.try_into().map_err(|_| "a token hash must be 64 hex digits (SHA-256)".to_owned())
}

/// A random secret for a token or an OAuth client: 256 bits from the OS generator, prefixed so
/// secret scanners recognise it.
pub fn generate_secret() -> String {
    format!("sb_{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// One stored token.
#[derive(Debug, Clone)]
pub struct StaticToken {
    pub label: String,
    pub hash: TokenHash,
    /// Unix seconds after which the token is refused.
    pub expires: Option<u64>,
}

/// Why a static token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRejection {
    /// No stored hash matches.
    Unknown,
    /// It matches a token whose expiry has passed.
    Expired,
}

/// The static tokens of one tenant.
#[derive(Debug, Clone, Default)]
pub struct StaticTokens {
    tokens: Vec<StaticToken>,
}

impl StaticTokens {
    /// The tenant's tokens.
    pub fn new(tokens: Vec<StaticToken>) -> Self {
        Self { tokens }
    }

    /// Whether no static token is configured.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The token `presented` matches, if it has not expired at `now` (Unix seconds). Every stored
    /// hash is compared, in constant time, so timing reveals neither which token nor how much of
    /// it matched.
    pub fn verify(&self, presented: &str, now: u64) -> Result<&StaticToken, TokenRejection> {
        let h = hash_token(presented);
        let mut found = None;
        for t in &self.tokens {
            if bool::from(t.hash.ct_eq(&h)) {
                found = Some(t);
            }
        }
        let t = found.ok_or(TokenRejection::Unknown)?;
        match t.expires {
            Some(e) if now >= e => Err(TokenRejection::Expired),
            _ => Ok(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(label: &str, secret: &str, expires: Option<u64>) -> StaticToken {
        StaticToken { label: label.into(), hash: hash_token(secret), expires }
    }

    #[test]
    fn verifies_by_hash_and_expiry() {
        let t = StaticTokens::new(vec![token("a", "s1", None), token("b", "s2", Some(100))]);
        assert_eq!(t.verify("s2", 99).map(|t| t.label.as_str()), Ok("b"));
        assert_eq!(t.verify("s2", 100).map(|t| t.label.as_str()), Err(TokenRejection::Expired));
        assert_eq!(t.verify("s1", u64::MAX).map(|t| t.label.as_str()), Ok("a"));
        assert_eq!(t.verify("s3", 0).map(|t| t.label.as_str()), Err(TokenRejection::Unknown));
        assert_eq!(t.verify("", 0).map(|t| t.label.as_str()), Err(TokenRejection::Unknown));
    }

    #[test]
    fn parses_hashes_and_generates_secrets() {
        let h = hash_token("demo-token");
        assert_eq!(parse_hash(&format!("sha256:{}", hex::encode(h))).unwrap(), h);
        assert!(parse_hash("abc").is_err());
        let (a, b) = (generate_secret(), generate_secret());
        assert_ne!(a, b);
        assert!(a.starts_with("sb_") && a.len() == 67);
    }
}
