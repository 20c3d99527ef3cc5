//! The tenant file format (`tenants/<id>.yaml`), documented in `docs/tenants.md`.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::env::EnvString;

/// One customer's identity-provider app, fronting one application instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantFile {
    /// The route segment: the SCIM base URL is `/{id}/scim/v2`.
    pub id: String,
    /// The mapping file (`mappings/<name>.yaml`) that describes the app.
    pub mapping: String,
    pub backend: BackendSpec,
    pub auth: AuthSpec,
    #[serde(default)]
    pub options: TenantOptions,
    /// Inbound rate limits; none by default.
    #[serde(default)]
    pub limits: LimitsSpec,
    /// This tenant's part of an app instance shared with other tenants, per resource type.
    #[serde(default)]
    pub scope: BTreeMap<String, ScopeSpec>,
}

/// The app field that marks a tenant's objects in a shared app instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeSpec {
    /// JSON pointer into the app object, e.g. `/org`.
    pub field: String,
    /// The value that marks this tenant's objects.
    pub value: serde_json::Value,
    /// Query parameters that make the app's list calls return only this tenant's objects.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
}

/// Inbound rate limits: for the whole tenant and for each token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    #[serde(default)]
    pub tenant: Option<RateSpec>,
    #[serde(default)]
    pub per_token: Option<RateSpec>,
}

/// A sustained rate and the burst allowed above it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateSpec {
    /// Requests per second, sustained.
    pub per_second: u32,
    /// Requests allowed at once (default: `per_second`).
    #[serde(default)]
    pub burst: Option<u32>,
}

/// Where the app is and how to authenticate to it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSpec {
    pub base_url: EnvString,
    /// Values templates see as `credentials.<name>`; use `${ENV}` references, not literals.
    #[serde(default)]
    pub credentials: BTreeMap<String, EnvString>,
    /// Per-attempt timeout for calls to the app.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Outbound limit on the calls to the app: calls queue for their turn instead of failing.
    #[serde(default)]
    pub rate_limit: Option<OutboundRateSpec>,
    /// Most calls to the app at once.
    #[serde(default)]
    pub max_in_flight: Option<u32>,
}

/// The pace of calls to the app, and how long a call may wait for its turn.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundRateSpec {
    /// Calls per second, sustained.
    pub per_second: u32,
    /// Calls allowed at once on top of an idle period (default: `per_second`).
    #[serde(default)]
    pub burst: Option<u32>,
    /// Longest a call waits for its turn before the SCIM request is refused with 503 (default 10000).
    #[serde(default)]
    pub max_wait_ms: Option<u64>,
}

/// Who may call this tenant: any mix of static tokens, identity-provider JWTs and tokens from the
/// tenant's own OAuth token endpoint; at least one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSpec {
    /// Static bearer tokens, by hash; several allow rotation without downtime.
    #[serde(default)]
    pub tokens: Vec<TokenSpec>,
    /// Identity providers whose JWTs are accepted.
    #[serde(default)]
    pub jwt: Vec<JwtSpec>,
    /// The OAuth 2.0 client-credentials endpoint `/{tenant}/oauth/token`.
    #[serde(default)]
    pub oauth: Option<OAuthSpec>,
}

/// A static token: a label for logs and its SHA-256 (`scimbridge token create` prints one).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    pub label: String,
    pub sha256: String,
    /// RFC 3339 time after which the token is refused.
    #[serde(default)]
    pub expires: Option<String>,
}

/// Settings filled in for a known kind of identity provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JwtPreset {
    /// The token Entra ID sends when an enterprise app's Secret Token is left blank.
    Entra,
    /// Any OpenID Connect issuer: keys found through its discovery document.
    Oidc,
}

/// One string or a list of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values as a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s.clone()],
            Self::Many(v) => v.clone(),
        }
    }
}

/// An identity provider whose JWTs this tenant accepts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSpec {
    /// Name in logs and audit; also the rate-limit key of its callers.
    pub label: String,
    #[serde(default)]
    pub preset: Option<JwtPreset>,
    /// Entra preset: the customer's directory (tenant) id.
    #[serde(default)]
    pub entra_tenant_id: Option<String>,
    #[serde(default)]
    pub issuer: Option<OneOrMany>,
    #[serde(default)]
    pub audience: Option<OneOrMany>,
    /// The one signature algorithm accepted, e.g. `RS256`, `ES256`, `HS256`.
    #[serde(default)]
    pub algorithm: Option<String>,
    #[serde(default)]
    pub jwks_url: Option<EnvString>,
    /// A PEM public key (RSA, EC or Ed25519).
    #[serde(default)]
    pub public_key_pem: Option<EnvString>,
    /// An HMAC secret (HS256/384/512), at least 32 bytes.
    #[serde(default)]
    pub secret: Option<EnvString>,
    /// Seconds of clock skew tolerated on `exp`/`nbf` (default 60).
    #[serde(default)]
    pub leeway_s: Option<u64>,
    /// Claims that must have exactly these values.
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
    /// The claim naming the caller in logs (default `sub`).
    #[serde(default)]
    pub subject_claim: Option<String>,
    /// Keys older than this are fetched again (default 3600).
    #[serde(default)]
    pub jwks_max_age_s: Option<u64>,
    /// Unknown key ids cause a fetch at most this often (default 30).
    #[serde(default)]
    pub jwks_min_refresh_s: Option<u64>,
}

/// The tenant's OAuth 2.0 client-credentials token endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthSpec {
    /// HMAC secret that signs issued tokens (at least 32 bytes; use `${ENV}`).
    pub signing_secret: EnvString,
    /// Earlier signing secrets, still accepted for tokens issued before a rotation.
    #[serde(default)]
    pub previous_signing_secrets: Vec<EnvString>,
    /// Lifetime of an issued token in seconds (default 3600).
    #[serde(default = "default_token_lifetime")]
    pub token_lifetime_s: u64,
    /// The clients allowed to ask for tokens.
    pub clients: Vec<OAuthClientSpec>,
}

fn default_token_lifetime() -> u64 {
    3600
}

/// A client of the token endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthClientSpec {
    pub client_id: String,
    /// SHA-256 of the client secret (`scimbridge token create` prints one).
    pub secret_sha256: String,
    /// Name in logs (default: the client id).
    #[serde(default)]
    pub label: Option<String>,
}

/// What a create of an existing resource answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDuplicate {
    /// 409 `uniqueness` (RFC 7644, what Entra and Okta expect).
    #[default]
    Conflict,
    /// The existing resource, as if the create had happened (for clients that retry blindly).
    ReturnExisting,
}

/// Behaviour switches.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantOptions {
    #[serde(default)]
    pub on_duplicate: OnDuplicate,
    /// The most results one list answer holds (`count` is capped to it).
    #[serde(default = "default_max_results")]
    pub max_results: usize,
    /// The most app objects a filter the app cannot search may examine before answering `tooMany`.
    #[serde(default = "default_max_scan")]
    pub max_scan: usize,
    /// Let this tenant's personal data (user names, filter values, attribute values) into log lines
    /// and audit events. Off by default: operators see the shape of a request, not whom it was about.
    #[serde(default)]
    pub log_personal_data: bool,
}

impl Default for TenantOptions {
    fn default() -> Self {
        Self {
            on_duplicate: OnDuplicate::default(),
            max_results: default_max_results(),
            max_scan: default_max_scan(),
            log_personal_data: false,
        }
    }
}

fn default_max_results() -> usize {
    1000
}

fn default_max_scan() -> usize {
    10_000
}
