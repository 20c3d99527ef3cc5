//! The app's single error type and its JSON wire format.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Convenience alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure a request can end in; rendered as
/// `{"error":{"code":"<code>","message":"<message>"}}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Missing or wrong `X-Api-Key`.
    #[error("missing or invalid API key")]
    Unauthorized,
    /// The addressed resource (or route) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A unique attribute (login, team name) is already taken.
    #[error("{0}")]
    Duplicate(String),
    /// The account is already a member of the team.
    #[error("account {account_id} is already a member of team {team_id}")]
    AlreadyMember { team_id: u64, account_id: u64 },
    /// The body parsed but failed validation; the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// The body could not be read or parsed as JSON.
    #[error("{0}")]
    BadRequest(String),
    /// The body exceeded the size limit.
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// The route exists but not for this method.
    #[error("method not allowed")]
    MethodNotAllowed,
}

impl Error {
    /// Shorthand for a validation error.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }

    /// Shorthand for a missing resource, e.g. `not_found("account", 7)`.
    pub fn not_found(kind: &str, id: impl std::fmt::Display) -> Self {
        Self::NotFound(format!("{kind} {id} not found"))
    }

    /// The HTTP status this error is served with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Duplicate(_) | Self::AlreadyMember { .. } => StatusCode::CONFLICT,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// The stable, snake_case machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::NotFound(_) => "not_found",
            Self::Duplicate(_) => "duplicate",
            Self::AlreadyMember { .. } => "already_member",
            Self::Invalid(_) => "invalid",
            Self::BadRequest(_) => "bad_request",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::MethodNotAllowed => "method_not_allowed",
        }
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: String,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let body = Envelope { error: Body { code: self.code(), message: self.to_string() } };
        (self.status(), Json(body)).into_response()
    }
}
