//! How the gateway authenticates to an app: HTTP Basic, a static bearer token, or OAuth 2.0 client
//! credentials (RFC 6749 §4.4) with the token cached until shortly before it expires.
//!
//! Credentials never appear in `Debug` output or errors.

use std::fmt;
use std::time::{Duration, Instant};

use serde::Deserialize;
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

/// OAuth 2.0 client credentials and the cached token.
pub struct OAuth2 {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: String,
    pub scope: Option<String>,
    pub audience: Option<String>,
    cached: Mutex<Option<(String, Instant)>>,
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
        Self { token_url, client_id, client_secret, scope, audience, cached: Mutex::new(None) }
    }

    /// A valid access token: the cached one, or a new one (one fetch at a time per app).
    pub async fn token(&self, client: &reqwest::Client) -> Result<String, BackendError> {
        let mut cached = self.cached.lock().await;
        if let Some((token, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
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
        let resp = client.post(&self.token_url).form(&form).send().await.map_err(|e| {
            if e.is_timeout() {
                BackendError::Timeout(Duration::ZERO)
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
        let margin = (lifetime / 10).min(Duration::from_secs(60));
        *cached = Some((body.access_token.clone(), Instant::now() + lifetime - margin));
        Ok(body.access_token)
    }

    /// Drops the cached token (the app rejected it).
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }
}
