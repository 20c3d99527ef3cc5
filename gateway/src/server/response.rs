//! SCIM responses: `application/scim+json` bodies, `Location` and `ETag` headers, and errors in the
//! RFC 7644 §3.12 shape for every failure, including the ones axum itself produces.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::scim::error::{ScimError, ScimType};
use crate::telemetry::personal;

/// The SCIM media type (RFC 7644 §3.1).
pub const SCIM_JSON: &str = "application/scim+json";

/// A SCIM answer.
pub struct Scim {
    pub status: StatusCode,
    pub body: Option<Value>,
    pub location: Option<String>,
    pub etag: Option<String>,
}

impl Scim {
    /// 200 with a body.
    pub fn ok(body: Value) -> Self {
        Self { status: StatusCode::OK, body: Some(body), location: None, etag: None }
    }
    /// 204.
    pub fn no_content() -> Self {
        Self { status: StatusCode::NO_CONTENT, body: None, location: None, etag: None }
    }
}

impl IntoResponse for Scim {
    fn into_response(self) -> Response {
        let mut headers = HeaderMap::new();
        if let Some(l) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            headers.insert(header::LOCATION, l);
        }
        if let Some(e) = self.etag.and_then(|e| HeaderValue::from_str(&e).ok()) {
            headers.insert(header::ETAG, e);
        }
        match self.body {
            Some(body) => {
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
                let bytes = serde_json::to_vec(&body).unwrap_or_default();
                (self.status, headers, bytes).into_response()
            }
            None => (self.status, headers).into_response(),
        }
    }
}

/// A SCIM error as an HTTP response.
pub struct ErrorResponse(pub ScimError);

/// The `scimType` of an error response, kept in the response's extensions for the request's span
/// (the body is already bytes by then).
#[derive(Debug, Clone, Copy)]
pub struct ErrorType(pub Option<ScimType>);

impl From<ScimError> for ErrorResponse {
    fn from(e: ScimError) -> Self {
        Self(e)
    }
}

impl IntoResponse for ErrorResponse {
    fn into_response(self) -> Response {
        let e = self.0;
        let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
        match status {
            StatusCode::UNAUTHORIZED => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"scimbridge\""));
            }
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                let secs = e.retry_after.map_or(HeaderValue::from_static("5"), HeaderValue::from);
                headers.insert(header::RETRY_AFTER, secs);
            }
            _ => {}
        }
        if status.is_server_error() {
            // The detail may quote an app's answer or a value of the request.
            tracing::warn!(status = e.status, detail = %personal(&e.detail), "request failed");
        }
        let bytes = serde_json::to_vec(&e.to_json()).unwrap_or_default();
        let mut response = (status, headers, bytes).into_response();
        response.extensions_mut().insert(ErrorType(e.scim_type));
        response
    }
}

/// Handler result.
pub type ScimResult = Result<Scim, ErrorResponse>;
