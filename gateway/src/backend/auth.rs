//! How the gateway authenticates to an app: HTTP Basic, a static bearer token, or OAuth 2.0 client
//! credentials (RFC 6749 §4.4) with the token cached until shortly before it expires.
//!
//! With replicas, OAuth tokens are also cached in a [`TokenCache`] they share (Redis), so an app's
//! token endpoint sees one client, not one per replica (some apps limit issuance, or revoke the
//! previous token on each new one). A token leaves the process sealed (AES-256-GCM under a key
//! derived from the client secret): who can read Redis but not the tenant's secrets gets nothing.
//!
//! Credentials never appear in `Debug` output or errors.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use super::BackendError;

/// Authentication applied to every call to one app.
pub enum Auth {
    None,
    Basic { username: String, password: String },
    Bearer(String),
    OAuth2(OAuth2),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Auth::None => "Auth::None",
            Auth::Basic { .. } => "Auth::Basic(..)",
            Auth::Bearer(_) => "Auth::Bearer(..)",
            Auth::OAuth2(_) => "Auth::OAuth2(..)",
        })
    }
}

/// A boxed future of a [`TokenCache`] call; `Err` when the cache cannot be reached.
pub type CacheFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// Values shared by replicas for a while (Redis): the sealed OAuth tokens of apps.
pub trait TokenCache: Send + Sync {
    /// The value under `key` and how long it has left to live.
    fn get<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Option<(Vec<u8>, Duration)>>;
    /// Stores `value` under `key` for `ttl`.
    fn put<'a>(&'a self, key: &'a str, value: Vec<u8>, ttl: Duration) -> CacheFuture<'a, ()>;
    /// Removes `key` if it still holds `value` (another replica may have stored a newer one).
    fn forget<'a>(&'a self, key: &'a str, value: Vec<u8>) -> CacheFuture<'a, ()>;
}

/// The token in use, until when, and its sealed form in the shared cache (if it is there).
struct Cached {
    token: String,
    until: Instant,
    sealed: Option<Vec<u8>>,
}

/// OAuth 2.0 client credentials and the cached token.
pub struct OAuth2 {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: String,
    pub scope: Option<String>,
    pub audience: Option<String>,
    cached: Mutex<Option<Cached>>,
    shared: OnceLock<Arc<dyn TokenCache>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl OAuth2 {
    /// Client credentials for `token_url`.
    pub fn new(
        token_url: String,
        client_id: String,
        client_secret: String,
        scope: Option<String>,
        audience: Option<String>,
    ) -> Self {
        Self { token_url, client_id, client_secret, scope, audience, cached: Mutex::new(None), shared: OnceLock::new() }
    }

    /// Shares tokens with other replicas through `cache` from now on (once).
    pub fn share(&self, cache: Arc<dyn TokenCache>) {
        let _ = self.shared.set(cache);
    }

    /// The shared cache's key: the same for every replica with these credentials, and new when
    /// any of them changes (a rotated secret never meets its predecessor's token).
    fn cache_key(&self) -> String {
        let digest = self.digest(b"scimbridge oauth token key v1");
        format!("oauth:{}", hex::encode(&digest[..16]))
    }

    fn digest(&self, label: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(label);
        for part in [
            Some(&self.token_url),
            Some(&self.client_id),
            Some(&self.client_secret),
            self.scope.as_ref(),
            self.audience.as_ref(),
        ] {
            let part = part.map_or(&b""[..], |p| p.as_bytes());
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.finalize().into()
    }

    fn sealing_key(&self) -> Option<LessSafeKey> {
        UnboundKey::new(&AES_256_GCM, &self.digest(b"scimbridge oauth token seal v1")).ok().map(LessSafeKey::new)
    }

    /// `nonce ‖ AES-256-GCM(token)`.
    fn seal(&self, token: &str) -> Option<Vec<u8>> {
        let key = self.sealing_key()?;
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).ok()?;
        let mut sealed = token.as_bytes().to_vec();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut sealed).ok()?;
        Some([&nonce[..], &sealed].concat())
    }

    fn open(&self, sealed: &[u8]) -> Option<String> {
        let key = self.sealing_key()?;
        let (nonce, body) = sealed.split_at_checked(NONCE_LEN)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = body.to_vec();
        let plain = key.open_in_place(nonce, Aad::empty(), &mut body).ok()?;
        String::from_utf8(plain.to_vec()).ok()
    }

    /// A token another replica fetched, if one is shared and has long enough to live.
    async fn shared_token(&self) -> Option<Cached> {
        let cache = self.shared.get()?;
        match cache.get(&self.cache_key()).await {
            // The shared entry expires at its renewal time already.
            Ok(Some((sealed, left))) if left >= Duration::from_secs(1) => {
                let token = self.open(&sealed)?;
                Some(Cached { token, until: Instant::now() + left, sealed: Some(sealed) })
            }
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error = %e, "shared token cache unreachable; fetching a token for this replica");
                None
            }
        }
    }

    /// A valid access token: the cached one, one another replica shared, or a new one (one fetch
    /// at a time per process).
    pub async fn token(&self, client: &reqwest::Client, timeout: Duration) -> Result<String, BackendError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && Instant::now() < c.until
        {
            return Ok(c.token.clone());
        }
        if let Some(shared) = self.shared_token().await {
            let token = shared.token.clone();
            *cached = Some(shared);
            return Ok(token);
        }
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.as_str()),
        ];
        if let Some(s) = &self.scope {
            form.push(("scope", s));
        }
        if let Some(a) = &self.audience {
            form.push(("audience", a));
        }
        let resp = client.post(&self.token_url).timeout(timeout).form(&form).send().await.map_err(|e| {
            if e.is_timeout() {
                BackendError::Timeout(timeout)
            } else {
                BackendError::Connect(format!("token endpoint: {}", e.without_url()))
            }
        })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(BackendError::Response(format!("the token endpoint answered {status}")));
        }
        let body: TokenResponse = resp
            .json()
            .await
            .map_err(|_| BackendError::Response("the token endpoint's answer has no access_token".into()))?;
        let lifetime = Duration::from_secs(body.expires_in.unwrap_or(3600));
        // Renew a little early so a token never expires on its way to the app.
        let margin = (lifetime / 10).min(RENEW_MARGIN);
        let mut sealed = None;
        if let Some(cache) = self.shared.get()
            && let Some(s) = self.seal(&body.access_token)
        {
            match cache.put(&self.cache_key(), s.clone(), lifetime - margin).await {
                Ok(()) => sealed = Some(s),
                Err(e) => tracing::warn!(error = %e, "cannot share a new app token; this replica keeps it alone"),
            }
        }
        *cached = Some(Cached { token: body.access_token.clone(), until: Instant::now() + lifetime - margin, sealed });
        Ok(body.access_token)
    }

    /// Drops the cached token (the app rejected it), here and, if it is still the shared one,
    /// for every replica.
    pub async fn invalidate(&self) {
        let dropped = self.cached.lock().await.take();
        if let (Some(cache), Some(sealed)) = (self.shared.get(), dropped.and_then(|c| c.sealed))
            && let Err(e) = cache.forget(&self.cache_key(), sealed).await
        {
            tracing::warn!(error = %e, "cannot drop a rejected app token from the shared cache");
        }
    }
}

/// A token is renewed this long before it expires (at most; a tenth of short lifetimes).
const RENEW_MARGIN: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    fn client(secret: &str) -> OAuth2 {
        OAuth2::new("https://idp.example/token".into(), "scimbridge".into(), secret.into(), None, None)
    }

    #[test]
    fn shared_tokens_are_sealed_for_holders_of_the_same_credentials_only() {
        let (a, b, rotated) = (client("s3cret"), client("s3cret"), client("n3w-secret"));
        let sealed = a.seal("the-token").expect("sealed");
        assert_eq!(sealed.len(), NONCE_LEN + "the-token".len() + 16);
        assert!(!sealed.windows(9).any(|w| w == b"the-token"), "not in the clear");
        assert_ne!(a.seal("the-token"), Some(sealed.clone()), "a fresh nonce each time");
        assert_eq!(b.open(&sealed).as_deref(), Some("the-token"), "another replica opens it");
        assert_eq!(rotated.open(&sealed), None, "another secret cannot");
        assert_eq!(a.cache_key(), b.cache_key());
        assert_ne!(a.cache_key(), rotated.cache_key(), "a rotated secret uses a new entry");
        let mut tampered = sealed.clone();
        tampered[NONCE_LEN] ^= 1;
        assert_eq!(b.open(&tampered), None, "a changed byte is refused");
        assert_eq!(b.open(&sealed[..5]), None, "so is a short value");
    }
}
