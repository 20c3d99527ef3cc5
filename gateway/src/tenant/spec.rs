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
}

/// Inbound rate limits: for the whole tenant and for each token.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    #[serde(default)]
    pub tenant: Option<RateSpec>,
    #[serde(default)]
    pub per_token: Option<RateSpec>,
}

/// A sustained rate and the burst allowed above it.
#[derive(Debug, Clone, Deserialize)]
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
}

/// Who may call this tenant.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSpec {
    /// Static bearer tokens, by hash; several allow rotation without downtime.
    pub tokens: Vec<TokenSpec>,
}

/// A static token: a label for logs and its SHA-256 (`scimbridge token hash` prints one).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    pub label: String,
    pub sha256: String,
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
}

impl Default for TenantOptions {
    fn default() -> Self {
        Self { on_duplicate: OnDuplicate::default(), max_results: default_max_results(), max_scan: default_max_scan() }
    }
}

fn default_max_results() -> usize {
    1000
}

fn default_max_scan() -> usize {
    10_000
}
