use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::support::{App, KEY};

#[tokio::test]
async fn health_needs_no_key() {
    let reply = App::new().raw(Method::GET, "/health", None, None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, json!({"status": "ok"}));
}

#[tokio::test]
async fn api_routes_need_the_exact_key() {
    let app = App::new();
    let expected = json!({"error": {"code": "unauthorized", "message": "missing or invalid API key"}});
    let routes = [
        (Method::GET, "/api/v1/accounts"),
        (Method::GET, "/api/v1/accounts/1001"),
        (Method::POST, "/api/v1/teams"),
        (Method::DELETE, "/api/v1/teams/501/members/1001"),
    ];
    for (method, uri) in routes {
        for key in [None, Some(""), Some("wrong"), Some("test-key ")] {
            let reply = app.raw(method.clone(), uri, key, None).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{method} {uri} {key:?}");
            assert_eq!(reply.body, expected);
        }
    }
    let reply = app.raw(Method::GET, "/api/v1/accounts", Some(KEY), None).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn unparseable_bodies_are_bad_requests() {
    let app = App::new();
    for body in ["{", "not json", "[1,2]", "\"account\"", ""] {
        let reply = app.raw(Method::POST, "/api/v1/accounts", Some(KEY), Some(body.into())).await;
        reply.assert_error(StatusCode::BAD_REQUEST, "bad_request");
    }
}

#[tokio::test]
async fn oversized_bodies_are_rejected() {
    let app = App::new();
    let padding = "x".repeat(1 << 20);
    let body = json!({"account": {"login": "a", "nick": padding}}).to_string();
    let reply = app.raw(Method::POST, "/api/v1/accounts", Some(KEY), Some(body)).await;
    reply.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    // Just under the limit is fine.
    let padding = "x".repeat((1 << 20) - 100);
    let body = json!({"account": {"login": "a", "nick": padding}}).to_string();
    let reply = app.raw(Method::POST, "/api/v1/accounts", Some(KEY), Some(body)).await;
    assert_eq!(reply.status, StatusCode::CREATED);
}

#[tokio::test]
async fn unknown_routes_methods_and_ids_use_the_error_format() {
    let app = App::new();
    app.get("/api/v1/users").await.assert_error(StatusCode::NOT_FOUND, "not_found");
    app.get("/nope").await.assert_error(StatusCode::NOT_FOUND, "not_found");
    app.get("/api/v1/accounts/abc").await.assert_error(StatusCode::NOT_FOUND, "not_found");
    app.get("/api/v1/accounts/-1").await.assert_error(StatusCode::NOT_FOUND, "not_found");
    app.call(Method::PATCH, "/api/v1/accounts/1001", Some(json!({})))
        .await
        .assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    app.call(Method::POST, "/health", None).await.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}
