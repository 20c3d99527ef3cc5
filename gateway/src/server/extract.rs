//! Request extraction with SCIM errors: the authenticated tenant, bounded JSON bodies, query pairs.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use bytes::Bytes;
use serde_json::Value;

use super::AppState;
use super::response::ErrorResponse;
use crate::auth::{self, Principal};
use crate::scim::error::ScimError;
use crate::telemetry::metrics;
use crate::tenant::Tenant;

/// The deepest JSON a request body may nest; SCIM resources need a handful of levels.
const MAX_JSON_DEPTH: usize = 32;

/// A request authenticated for the tenant named in its path.
pub struct Authorized {
    pub tenant: Arc<Tenant>,
    /// Who called (by label and subject): for logs and audit, never the token itself.
    pub principal: Principal,
}

/// One answer for unknown tenants and every kind of bad token, so neither tenant ids nor the
/// reason a token failed can be probed; the reason goes to the log.
fn unauthorized() -> axum::response::Response {
    let mut r = ErrorResponse(ScimError::status(401, "authentication required: a valid bearer token for this tenant"))
        .into_response();
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"scim\""));
    r
}

/// The tenant named by the request's `{tenant}` path segment.
async fn path_tenant<S: Send + Sync>(parts: &mut Parts, state: &S, app: &AppState) -> Option<Arc<Tenant>> {
    let Path(params): Path<Vec<(String, String)>> = Path::from_request_parts(parts, state).await.ok()?;
    let tenant_id = params.iter().find(|(k, _)| k == "tenant").map(|(_, v)| v.as_str())?;
    app.registry.load().get(tenant_id).cloned()
}

impl<S> FromRequestParts<S> for Authorized
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = axum::response::Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let app = AppState::from_ref(state);
        let Some(tenant) = path_tenant(parts, state, &app).await else {
            metrics::get().auth_failure(metrics::UNKNOWN, "unknown_tenant");
            return Err(unauthorized());
        };
        let presented = parts.headers.get(header::AUTHORIZATION).and_then(|h| h.to_str().ok()).and_then(auth::bearer);
        let principal = match presented {
            None => Err(auth::Rejection::Missing),
            Some(token) => tenant.auth.authenticate(token).await,
        };
        let principal = principal.map_err(|why| {
            tracing::info!(tenant = %tenant.id, reason = why.reason(), detail = %why, "request refused");
            metrics::get().auth_failure(&tenant.id, why.reason());
            unauthorized()
        })?;
        if let Err(wait) = admit(&app, &tenant, &principal.label).await {
            return Err(too_many_requests(wait));
        }
        Ok(Self { tenant, principal })
    }
}

/// Checks the tenant's rate limits for `key`: this process's, then the replicas' shared ones; a
/// refusal is counted by the limit that refused, and says how long to wait.
pub async fn admit(app: &AppState, tenant: &Tenant, key: &str) -> Result<(), std::time::Duration> {
    let checked = match (tenant.limits.check(key), &app.shared_limits) {
        (Ok(()), Some(shared)) => tenant.limits.check_shared(shared.as_ref(), &tenant.id, key).await,
        (local, _) => local,
    };
    checked.map_err(|refused| {
        metrics::get().rate_limited(&tenant.id, refused.by.as_str());
        refused.wait
    })
}

/// 429 with `Retry-After` in whole seconds (at least 1) and a SCIM error body.
pub fn too_many_requests(wait: std::time::Duration) -> axum::response::Response {
    // `with_retry_after` rounds the wait (up, at least 1 s); the response sets the header from it.
    let e = ScimError::status(429, String::new()).with_retry_after(wait);
    let secs = e.retry_after.unwrap_or(1);
    ErrorResponse(ScimError { detail: format!("rate limit exceeded; retry after {secs} s"), ..e }).into_response()
}

/// Parses a request body as a JSON value, within depth and content-type rules.
pub fn json_body(headers: &axum::http::HeaderMap, body: &Bytes) -> Result<Value, ScimError> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        let mime = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        if mime != "application/scim+json" && mime != "application/json" {
            return Err(ScimError::status(
                415,
                format!("unsupported content type `{mime}`; use application/scim+json"),
            ));
        }
    }
    if body.is_empty() {
        return Err(ScimError::invalid_syntax("the request body is empty"));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| ScimError::invalid_syntax(format!("invalid JSON: {e}")))?;
    if depth(&v) > MAX_JSON_DEPTH {
        return Err(ScimError::invalid_syntax(format!("JSON nests deeper than {MAX_JSON_DEPTH} levels")));
    }
    Ok(v)
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// The query string as ordered pairs.
pub fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    #[test]
    fn bodies_are_bounded() {
        let h = HeaderMap::new();
        assert!(json_body(&h, &Bytes::from_static(b"{\"a\":1}")).is_ok());
        assert!(json_body(&h, &Bytes::from_static(b"{")).is_err());
        let deep = "[".repeat(40) + &"]".repeat(40);
        assert!(json_body(&h, &Bytes::from(deep)).is_err());
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert_eq!(json_body(&h, &Bytes::from_static(b"{}")).unwrap_err().status, 415);
    }

    #[test]
    fn query() {
        assert_eq!(
            query_pairs(Some("filter=userName%20eq%20%22a%2Bb%22&count=5")),
            vec![("filter".into(), "userName eq \"a+b\"".into()), ("count".into(), "5".into())]
        );
    }
}
