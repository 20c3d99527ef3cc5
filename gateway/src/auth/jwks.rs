//! JSON Web Key Sets fetched from an identity provider and cached: refreshed when they grow old,
//! and at once when a token names a key id the cache does not know (a provider's key rollover),
//! but at most once per `min_refresh` so a stream of forged key ids cannot make the gateway hammer
//! the provider. Caches are shared by URL across tenants and configuration reloads.
//!
//! Touches the network (the JWKS and OpenID discovery documents) and nothing else.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{JwkSet, PublicKeyUse};
use jsonwebtoken::{AlgorithmFamily, DecodingKey};

/// The largest JWKS or discovery document accepted.
const MAX_DOCUMENT: usize = 256 * 1024;
/// Timeout of one fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the keys come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JwksSource {
    /// A JWKS URL.
    Url(String),
    /// An OpenID provider: its discovery document names the JWKS URL.
    Discovery { issuer: String },
}

impl JwksSource {
    fn key(&self) -> String {
        match self {
            Self::Url(u) => format!("jwks {u}"),
            Self::Discovery { issuer } => format!("oidc {issuer}"),
        }
    }
}

/// Refresh timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refresh {
    /// Keys older than this are fetched again before use.
    pub max_age: Duration,
    /// Fetches caused by unknown key ids or failures are at least this far apart.
    pub min_interval: Duration,
}

impl Default for Refresh {
    fn default() -> Self {
        Self { max_age: Duration::from_secs(3600), min_interval: Duration::from_secs(30) }
    }
}

/// A key of the set, ready to verify with.
struct Key {
    kid: Option<String>,
    family: AlgorithmFamily,
    key: DecodingKey,
}

#[derive(Default)]
struct KeySet {
    keys: Vec<Key>,
    fetched: Option<Instant>,
}

#[derive(Default)]
struct FetchState {
    last_attempt: Option<Instant>,
    /// The JWKS URL found by discovery, once found.
    discovered: Option<String>,
}

/// Why no key could be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("no key `{0}` in the identity provider's key set")]
    UnknownKey(String),
    #[error("the identity provider's key set could not be fetched: {0}")]
    Unavailable(String),
}

/// One cached key set.
pub struct Jwks {
    source: JwksSource,
    refresh: Refresh,
    keys: ArcSwap<KeySet>,
    fetch: tokio::sync::Mutex<FetchState>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks").field("source", &self.source).finish_non_exhaustive()
    }
}

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .unwrap_or_default()
    })
}

impl Jwks {
    /// The process-wide cache for `source`: tenants (and reloaded configurations) that trust the
    /// same provider share one key set and one fetch schedule.
    pub fn shared(source: JwksSource, refresh: Refresh) -> Arc<Self> {
        static CACHES: OnceLock<Mutex<HashMap<String, Weak<Jwks>>>> = OnceLock::new();
        let caches = CACHES.get_or_init(Default::default);
        let mut map = caches.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, w| w.strong_count() > 0);
        let key = format!("{} {:?}", source.key(), refresh);
        if let Some(j) = map.get(&key).and_then(Weak::upgrade) {
            return j;
        }
        let j = Arc::new(Self {
            source,
            refresh,
            keys: ArcSwap::from_pointee(KeySet::default()),
            fetch: tokio::sync::Mutex::new(FetchState::default()),
        });
        map.insert(key, Arc::downgrade(&j));
        j
    }

    /// The keys that may have signed a token with `kid` and an algorithm of `family`: the key with
    /// that id, or, for a token without `kid`, every key of the family.
    pub async fn keys_for(&self, kid: Option<&str>, family: AlgorithmFamily) -> Result<Vec<DecodingKey>, JwksError> {
        let now = Instant::now();
        let current = self.keys.load_full();
        let fresh = current.fetched.is_some_and(|t| now.duration_since(t) < self.refresh.max_age);
        let found = select(&current, kid, family);
        if fresh && !found.is_empty() {
            return Ok(found);
        }
        self.refresh(&current).await;
        let found = select(&self.keys.load(), kid, family);
        if !found.is_empty() {
            return Ok(found);
        }
        let loaded = self.keys.load();
        if loaded.fetched.is_none() {
            return Err(JwksError::Unavailable("no successful fetch yet".into()));
        }
        Err(JwksError::UnknownKey(kid.unwrap_or("(none)").chars().take(64).collect()))
    }

    /// Fetches the set again unless another task just did, or the last attempt was too recent.
    async fn refresh(&self, seen: &Arc<KeySet>) {
        let mut state = self.fetch.lock().await;
        if !Arc::ptr_eq(seen, &self.keys.load_full()) {
            return; // another request refreshed while this one waited
        }
        let now = Instant::now();
        if state.last_attempt.is_some_and(|t| now.duration_since(t) < self.refresh.min_interval) {
            return;
        }
        state.last_attempt = Some(now);
        match self.fetch_set(&mut state).await {
            Ok(keys) => {
                tracing::info!(source = %self.source.key(), keys = keys.len(), "fetched signing keys");
                self.keys.store(Arc::new(KeySet { keys, fetched: Some(Instant::now()) }));
            }
            Err(e) => tracing::warn!(source = %self.source.key(), error = %e, "cannot fetch signing keys"),
        }
    }

    async fn fetch_set(&self, state: &mut FetchState) -> Result<Vec<Key>, String> {
        let url = match (&self.source, &state.discovered) {
            (JwksSource::Url(u), _) => u.clone(),
            (JwksSource::Discovery { .. }, Some(u)) => u.clone(),
            (JwksSource::Discovery { issuer }, None) => {
                let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
                let doc: serde_json::Value = fetch_json(&url).await?;
                let jwks =
                    doc.get("jwks_uri").and_then(|v| v.as_str()).ok_or("the discovery document has no jwks_uri")?;
                state.discovered = Some(jwks.to_owned());
                jwks.to_owned()
            }
        };
        let set: JwkSet = fetch_json(&url).await?;
        Ok(usable_keys(&set))
    }
}

/// The signature keys of a set that this gateway can use; others (encryption keys, unknown types)
/// are skipped, not fatal, as providers publish them side by side.
fn usable_keys(set: &JwkSet) -> Vec<Key> {
    set.keys
        .iter()
        .filter(|jwk| !matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)))
        .filter_map(|jwk| {
            let key = DecodingKey::from_jwk(jwk).ok()?;
            Some(Key { kid: jwk.common.key_id.clone(), family: key.family(), key })
        })
        .collect()
}

fn select(set: &KeySet, kid: Option<&str>, family: AlgorithmFamily) -> Vec<DecodingKey> {
    set.keys
        .iter()
        .filter(|k| k.family == family && (kid.is_none() || k.kid.as_deref() == kid))
        .map(|k| k.key.clone())
        .collect()
}

async fn fetch_json<T: serde::de::DeserializeOwned>(url: &str) -> Result<T, String> {
    let resp = client().get(url).send().await.map_err(|e| format!("GET {url}: {}", e.without_url()))?;
    if !resp.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", resp.status().as_u16()));
    }
    if resp.content_length().is_some_and(|n| n > MAX_DOCUMENT as u64) {
        return Err(format!("GET {url}: the document is larger than {MAX_DOCUMENT} bytes"));
    }
    let body = resp.bytes().await.map_err(|e| format!("GET {url}: {}", e.without_url()))?;
    if body.len() > MAX_DOCUMENT {
        return Err(format!("GET {url}: the document is larger than {MAX_DOCUMENT} bytes"));
    }
    serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not a valid document: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_signature_keys_it_can_use() {
        let set: JwkSet = serde_json::from_value(serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "r1", "use": "sig", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"},
            {"kty": "oct", "kid": "h", "k": "c2VjcmV0"}
        ]}))
        .unwrap();
        let keys = usable_keys(&set);
        let set = KeySet { keys, fetched: Some(Instant::now()) };
        assert_eq!(select(&set, Some("r1"), AlgorithmFamily::Rsa).len(), 1);
        assert_eq!(select(&set, Some("enc"), AlgorithmFamily::Rsa).len(), 0);
        // A symmetric key in a provider's set never verifies an RSA-pinned token.
        assert_eq!(select(&set, Some("h"), AlgorithmFamily::Rsa).len(), 0);
        assert_eq!(select(&set, None, AlgorithmFamily::Rsa).len(), 1);
    }

    #[test]
    fn caches_are_shared_by_source() {
        let a = Jwks::shared(JwksSource::Url("http://127.0.0.1:1/k".into()), Refresh::default());
        let b = Jwks::shared(JwksSource::Url("http://127.0.0.1:1/k".into()), Refresh::default());
        let c = Jwks::shared(JwksSource::Url("http://127.0.0.1:1/other".into()), Refresh::default());
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
    }
}
