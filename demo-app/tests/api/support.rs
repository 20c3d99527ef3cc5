//! In-process client for the app's router.

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

pub const KEY: &str = "test-key";

/// A fresh app with empty state; clones share state.
#[derive(Clone)]
pub struct App(Router);

/// A buffered response; `body` is `Value::Null` when empty.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// Asserts the app's error format with the given status and code.
    pub fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "{:?}", self.body);
        assert_eq!(self.body["error"]["code"], code, "{:?}", self.body);
        assert!(self.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{:?}", self.body);
    }

    /// The error message, or "".
    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or_default()
    }
}

impl App {
    pub fn new() -> Self {
        Self(demo_app::router(demo_app::Config::new(KEY)))
    }

    /// Sends a request with the right API key.
    pub async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> Reply {
        let body = body.map(|b| b.to_string());
        self.raw(method, uri, Some(KEY), body).await
    }

    /// Sends a request with full control over the key and raw body.
    pub async fn raw(&self, method: Method, uri: &str, key: Option<&str>, body: Option<String>) -> Reply {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let request = request.body(body.map_or_else(Body::empty, Body::from)).expect("valid request");
        let response = self.0.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = to_bytes(response.into_body(), usize::MAX).await.expect("body");
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("JSON body") };
        Reply { status, headers, body }
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.call(Method::GET, uri, None).await
    }

    pub async fn post(&self, uri: &str, body: Value) -> Reply {
        self.call(Method::POST, uri, Some(body)).await
    }

    pub async fn put(&self, uri: &str, body: Value) -> Reply {
        self.call(Method::PUT, uri, Some(body)).await
    }

    pub async fn delete(&self, uri: &str) -> Reply {
        self.call(Method::DELETE, uri, None).await
    }

    /// Creates an account with just a login (plus `extra` fields); returns its id.
    pub async fn account(&self, login: &str, extra: Value) -> u64 {
        let mut account = serde_json::json!({"login": login});
        if let (Some(obj), Value::Object(more)) = (account.as_object_mut(), extra) {
            obj.extend(more);
        }
        let reply = self.post("/api/v1/accounts", serde_json::json!({"account": account})).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        reply.body["account"]["id"].as_u64().expect("id")
    }

    /// Creates a team by name; returns its id.
    pub async fn team(&self, name: &str) -> u64 {
        let reply = self.post("/api/v1/teams", serde_json::json!({"team": {"name": name}})).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        reply.body["team"]["id"].as_u64().expect("id")
    }
}

/// The `id`s of a list response's items under `key`.
pub fn ids(body: &Value, key: &str, id_field: &str) -> Vec<u64> {
    body[key].as_array().map(|items| items.iter().filter_map(|i| i[id_field].as_u64()).collect()).unwrap_or_default()
}
