//! Authentication of every `/api` route: the `X-Api-Key` header, or a bearer token issued at
//! `/api/v1/oauth/token`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::api::AppState;
use crate::error::{Error, Result};

/// Header carrying the shared secret.
pub const HEADER: &str = "x-api-key";

/// The configured key; compared in time independent of the presented value.
#[derive(Debug)]
pub struct ApiKey(Box<[u8]>);

impl ApiKey {
    /// Wraps the configured key.
    pub fn new(key: &str) -> Self {
        Self(key.as_bytes().into())
    }

    /// Whether `presented` is the key; an empty presented value never is.
    pub fn matches(&self, presented: &[u8]) -> bool {
        !presented.is_empty() && constant_time_eq(presented, &self.0)
    }
}

/// Compares in time that depends only on `expected`'s length.
fn constant_time_eq(presented: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(presented.len() != expected.len());
    for (i, &byte) in expected.iter().enumerate() {
        diff |= byte ^ presented.get(i).copied().unwrap_or(!byte);
    }
    std::hint::black_box(diff) == 0
}

/// Middleware rejecting requests without the right key or a valid token with `401 unauthorized`.
pub async fn require_api_key(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Result<Response> {
    let presented = request.headers().get(HEADER).map(|value| value.as_bytes());
    let bearer = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if presented.is_some_and(|key| state.api_key.matches(key)) || bearer.is_some_and(|t| state.tokens.contains(t)) {
        Ok(next.run(request).await)
    } else {
        Err(Error::Unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_the_exact_key() {
        let key = ApiKey::new("s3cret");
        assert!(key.matches(b"s3cret"));
        for wrong in [&b""[..], b"s3cre", b"s3cret!", b"S3cret", b"x"] {
            assert!(!key.matches(wrong), "{wrong:?}");
        }
        assert!(!ApiKey::new("").matches(b""));
    }
}
