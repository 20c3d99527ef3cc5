//! `POST /{tenant}/oauth/token`: the OAuth 2.0 client-credentials grant (RFC 6749 §4.4) for
//! clients that prefer short-lived tokens to a long-lived secret. Answers are RFC 6749's JSON
//! (§5.1, §5.2), not SCIM errors: OAuth clients parse those.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use serde_json::json;

use super::AppState;
use super::extract::too_many_requests;
use crate::auth::{self, issuer::IssueError};

/// The rate-limit key of token requests: one budget per tenant for the endpoint, whatever client
/// id a caller invents.
const LIMIT_KEY: &str = "oauth-token-endpoint";

fn error(status: StatusCode, code: &str, description: &str) -> Response {
    let mut r = (status, axum::Json(json!({"error": code, "error_description": description}))).into_response();
    no_store(r.headers_mut());
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"oauth\""));
    }
    r
}

fn no_store(h: &mut HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

fn invalid_client() -> Response {
    error(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed")
}

/// Client id and secret from HTTP Basic (RFC 6749 §2.3.1: each form-urlencoded first).
fn basic_credentials(headers: &HeaderMap) -> Option<Result<(String, String), ()>> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let parse = || -> Option<(String, String)> {
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (id, secret) = text.split_once(':')?;
        let unescape =
            |s: &str| form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
        Some((unescape(id)?, unescape(secret)?))
    };
    Some(parse().ok_or(()))
}

/// Issues a token to a client of the tenant.
pub async fn token(
    State(app): State<AppState>,
    Path(tenant_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| {
        ct.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case("application/x-www-form-urlencoded")
    });
    if !form_type {
        return error(StatusCode::BAD_REQUEST, "invalid_request", "send application/x-www-form-urlencoded");
    }
    let mut params = std::collections::HashMap::new();
    for (k, v) in form_urlencoded::parse(&body) {
        if params.insert(k.into_owned(), v.into_owned()).is_some() {
            return error(StatusCode::BAD_REQUEST, "invalid_request", "a parameter is repeated");
        }
    }
    match params.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        Some(_) => return error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "only client_credentials"),
        None => return error(StatusCode::BAD_REQUEST, "invalid_request", "grant_type is required"),
    }
    let in_form = (params.get("client_id"), params.get("client_secret"));
    let (client_id, secret) = match (basic_credentials(&headers), in_form) {
        (Some(_), (Some(_), _) | (_, Some(_))) => {
            return error(StatusCode::BAD_REQUEST, "invalid_request", "use one client authentication method");
        }
        (Some(Ok(pair)), _) => pair,
        (Some(Err(())), _) => return invalid_client(),
        (None, (Some(id), Some(secret))) => (id.clone(), secret.clone()),
        (None, _) => return invalid_client(),
    };
    let Some(tenant) = app.registry.load().get(&tenant_id).cloned() else {
        return invalid_client();
    };
    let Some(issuer) = tenant.auth.issuer.as_ref() else {
        return invalid_client();
    };
    if let Err(wait) = super::extract::admit(&app, &tenant, LIMIT_KEY).await {
        return too_many_requests(wait);
    }
    match issuer.issue(&client_id, &secret, auth::now()) {
        Ok(issued) => {
            tracing::info!(tenant = %tenant.id, client = %client_id.chars().take(64).collect::<String>(), "token issued");
            let mut r = axum::Json(json!({
                "access_token": issued.access_token,
                "token_type": "Bearer",
                "expires_in": issued.expires_in,
            }))
            .into_response();
            no_store(r.headers_mut());
            r
        }
        Err(IssueError::InvalidClient) => {
            tracing::info!(tenant = %tenant.id, reason = "invalid_client", "token request refused");
            crate::telemetry::metrics::get().auth_failure(&tenant.id, "invalid_client");
            invalid_client()
        }
        Err(IssueError::Signing) => error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "cannot sign a token"),
    }
}
