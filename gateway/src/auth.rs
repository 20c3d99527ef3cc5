//! Who may call a tenant: static bearer tokens, stored as SHA-256 hashes and checked in constant
//! time. (JWT validation joins here as another verifier behind the same `verify` seam.)

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

/// The static tokens of one tenant.
#[derive(Debug, Clone, Default)]
pub struct StaticTokens {
    tokens: Vec<(String, TokenHash)>,
}

impl StaticTokens {
    /// Tokens as `(label, hash)` pairs.
    pub fn new(tokens: Vec<(String, TokenHash)>) -> Self {
        Self { tokens }
    }

    /// The label of the token `presented` matches. Every stored hash is compared, in constant time,
    /// so timing reveals neither which token nor how much of it matched.
    pub fn verify(&self, presented: &str) -> Option<&str> {
        let h = hash_token(presented);
        let mut found = None;
        for (label, stored) in &self.tokens {
            if bool::from(stored.ct_eq(&h)) {
                found = Some(label.as_str());
            }
        }
        found
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
    fn verifies_by_hash() {
        let t = StaticTokens::new(vec![("a".into(), hash_token("s1")), ("b".into(), hash_token("s2"))]);
        assert_eq!(t.verify("s2"), Some("b"));
        assert_eq!(t.verify("s3"), None);
        assert_eq!(t.verify(""), None);
    }

    #[test]
    fn parses_headers_and_hashes() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
        let h = hash_token("demo-token");
        assert_eq!(parse_hash(&format!("sha256:{}", hex::encode(h))).unwrap(), h);
        assert!(parse_hash("abc").is_err());
    }
}
