//! `POST /api/v1/oauth/token`: OAuth 2.0 client credentials (RFC 6749 §4.4) for clients that prefer
//! short-lived bearer tokens to the API key. The client secret is the API key; a token lives an
//! hour and opens the same routes as the key.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Json;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::AppState;

/// Seconds a token lives.
const LIFETIME: u64 = 3600;

/// Tokens handed out so far (the demo app keeps everything in memory).
#[derive(Debug, Default)]
pub struct Tokens(Mutex<HashSet<String>>);

impl Tokens {
    /// Whether `token` was issued here.
    pub fn contains(&self, token: &str) -> bool {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).contains(token)
    }

    fn issue(&self) -> String {
        let token = uuid::Uuid::new_v4().simple().to_string();
        self.0.lock().unwrap_or_else(PoisonError::into_inner).insert(token.clone());
        token
    }
}

/// The form of a token request.
#[derive(Debug, Deserialize)]
pub struct TokenRequest {
    grant_type: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    client_secret: String,
}

/// Answers in RFC 6749 §5.1 / §5.2 form.
pub async fn token(State(state): State<Arc<AppState>>, Form(req): Form<TokenRequest>) -> Response {
    let error = |status: StatusCode, code: &str| (status, Json(json!({ "error": code }))).into_response();
    if req.grant_type != "client_credentials" {
        return error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    if req.client_id.is_empty() || !state.api_key.matches(req.client_secret.as_bytes()) {
        return error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let access_token = state.tokens.issue();
    (
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(json!({ "access_token": access_token, "token_type": "Bearer", "expires_in": LIFETIME })),
    )
        .into_response()
}
