use axum::http::StatusCode;
use serde_json::json;

use crate::support::{App, ids};

#[tokio::test]
async fn create_returns_full_object_and_location() {
    let app = App::new();
    let reply = app
        .post(
            "/api/v1/accounts",
            json!({"account": {
                "login": "bjensen@example.com",
                "first_name": "Barbara",
                "last_name": "Jensen",
                "display": "Babs Jensen",
                "email": "bjensen@example.com",
                "id": 42,
                "created_at": "ignored",
            }}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(reply.headers["location"], "/api/v1/accounts/1001");
    let account = &reply.body["account"];
    assert_eq!(account["id"], 1001);
    assert_eq!(account["login"], "bjensen@example.com");
    assert_eq!(account["display"], "Babs Jensen");
    assert_eq!(account["status"], "active");
    assert_eq!(account["manager_id"], json!(null));
    for field in
        ["nick", "job_title", "phone", "employee_no", "department", "cost_center", "org", "division", "ext_ref"]
    {
        assert_eq!(account[field], json!(null), "{field}");
    }
    let created_at = account["created_at"].as_str().expect("created_at");
    assert!(created_at.ends_with('Z') && created_at.len() == 24, "{created_at}");
    assert_eq!(account["updated_at"], account["created_at"]);
    assert_eq!(account.as_object().map(|o| o.len()), Some(19));

    let fetched = app.get("/api/v1/accounts/1001").await;
    assert_eq!(fetched.status, StatusCode::OK);
    assert_eq!(fetched.body, reply.body);
    assert_eq!(app.account("second", json!({})).await, 1002);
}

#[tokio::test]
async fn login_is_required_and_unique_ignoring_case() {
    let app = App::new();
    app.account("Ann@Example.com", json!({})).await;
    let dup = app.post("/api/v1/accounts", json!({"account": {"login": "ann@example.COM"}})).await;
    dup.assert_error(StatusCode::CONFLICT, "duplicate");
    assert_eq!(dup.message(), "login 'ann@example.COM' is already taken");

    for body in [json!({"account": {}}), json!({"account": {"login": ""}})] {
        let reply = app.post("/api/v1/accounts", body).await;
        reply.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
        assert!(reply.message().contains("account.login"), "{}", reply.message());
    }
}

#[tokio::test]
async fn validates_status_manager_and_types() {
    let app = App::new();
    let cases = [
        (json!({"login": "a", "status": "deleted"}), "account.status"),
        (json!({"login": "a", "manager_id": 999}), "account.manager_id"),
        (json!({"login": "a", "manager_id": "1001"}), "account.manager_id"),
        (json!({"login": "a", "phone": 5551234}), "account.phone"),
        (json!({"login": 7}), "account.login"),
    ];
    for (account, field) in cases {
        let reply = app.post("/api/v1/accounts", json!({"account": account})).await;
        reply.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
        assert!(reply.message().contains(field), "{}", reply.message());
    }
    let boss = app.account("boss", json!({})).await;
    let report = app.account("report", json!({"manager_id": boss, "status": "suspended"})).await;
    let reply = app.get(&format!("/api/v1/accounts/{report}")).await;
    assert_eq!(reply.body["account"]["manager_id"], boss);
    assert_eq!(reply.body["account"]["status"], "suspended");
}

#[tokio::test]
async fn unknown_fields_are_rejected_by_name() {
    let app = App::new();
    let reply = app.post("/api/v1/accounts", json!({"account": {"login": "a", "nickname": "x"}})).await;
    reply.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_eq!(reply.message(), "unknown field 'account.nickname'");

    let reply = app.post("/api/v1/accounts", json!({"account": {"login": "a"}, "extra": true})).await;
    reply.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_eq!(reply.message(), "unknown field 'extra'");

    let reply = app.post("/api/v1/accounts", json!({"login": "a"})).await;
    reply.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
}

#[tokio::test]
async fn put_replaces_all_fields_and_keeps_status_when_absent() {
    let app = App::new();
    let id = app.account("a", json!({"email": "a@example.com", "status": "suspended", "nick": "al"})).await;
    let uri = format!("/api/v1/accounts/{id}");
    let before = app.get(&uri).await.body;
    let reply = app.put(&uri, json!({"account": {"login": "A2", "department": "R&D"}})).await;
    assert_eq!(reply.status, StatusCode::OK);
    let account = &reply.body["account"];
    assert_eq!(account["login"], "A2");
    assert_eq!(account["department"], "R&D");
    assert_eq!(account["email"], json!(null));
    assert_eq!(account["nick"], json!(null));
    assert_eq!(account["status"], "suspended");
    assert_eq!(account["created_at"], before["account"]["created_at"]);

    let reply = app.put(&uri, json!({"account": {"login": "A2", "status": "active"}})).await;
    assert_eq!(reply.body["account"]["status"], "active");

    app.account("taken", json!({})).await;
    let reply = app.put(&uri, json!({"account": {"login": "TAKEN"}})).await;
    reply.assert_error(StatusCode::CONFLICT, "duplicate");
    let reply = app.put(&uri, json!({"account": {"login": "a2", "manager_id": id}})).await;
    reply.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    let reply = app.put("/api/v1/accounts/9999", json!({"account": {"login": "z"}})).await;
    reply.assert_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn delete_removes_and_clears_manager_references() {
    let app = App::new();
    let boss = app.account("boss", json!({})).await;
    let report = app.account("report", json!({"manager_id": boss})).await;
    let reply = app.delete(&format!("/api/v1/accounts/{boss}")).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(reply.body, json!(null));
    app.get(&format!("/api/v1/accounts/{boss}")).await.assert_error(StatusCode::NOT_FOUND, "not_found");
    app.delete(&format!("/api/v1/accounts/{boss}")).await.assert_error(StatusCode::NOT_FOUND, "not_found");
    let reply = app.get(&format!("/api/v1/accounts/{report}")).await;
    assert_eq!(reply.body["account"]["manager_id"], json!(null));
    // The login is free again.
    app.account("BOSS", json!({})).await;
}

#[tokio::test]
async fn list_pages_by_id_with_clamped_limit() {
    let app = App::new();
    for i in 0..205 {
        let status = if i % 2 == 0 { "active" } else { "suspended" };
        app.account(&format!("user{i}"), json!({"status": status})).await;
    }
    let reply = app.get("/api/v1/accounts").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["paging"], json!({"offset": 0, "limit": 50, "total": 205}));
    assert_eq!(ids(&reply.body, "accounts", "id"), (1001..1051).collect::<Vec<_>>());

    let reply = app.get("/api/v1/accounts?offset=200&limit=1000").await;
    assert_eq!(reply.body["paging"], json!({"offset": 200, "limit": 200, "total": 205}));
    assert_eq!(ids(&reply.body, "accounts", "id"), [1201, 1202, 1203, 1204, 1205]);
    // Suspended accounts are listed too.
    assert_eq!(reply.body["accounts"][0]["status"], "active");
    assert_eq!(reply.body["accounts"][1]["status"], "suspended");

    let reply = app.get("/api/v1/accounts?offset=500").await;
    assert_eq!(ids(&reply.body, "accounts", "id"), Vec::<u64>::new());
    assert_eq!(reply.body["paging"]["total"], 205);
}

#[tokio::test]
async fn search_params_use_exact_matches() {
    let app = App::new();
    let a = app.account("Ann", json!({"email": "Shared@Example.com", "ext_ref": "X-1"})).await;
    let b = app.account("bob", json!({"email": "shared@example.com", "ext_ref": "x-1"})).await;
    app.account("cid", json!({})).await;

    let cases = [
        ("login=ANN", vec![a]),
        ("login=an", vec![]),
        ("email=SHARED%40example.com", vec![a, b]),
        ("ext_ref=X-1", vec![a]),
        ("ext_ref=x-1", vec![b]),
        ("email=shared%40example.com&ext_ref=x-1", vec![b]),
        ("email=shared%40example.com&limit=1&offset=1", vec![b]),
    ];
    for (query, expected) in cases {
        let reply = app.get(&format!("/api/v1/accounts?{query}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{query}");
        assert_eq!(ids(&reply.body, "accounts", "id"), expected, "{query}");
    }
    let reply = app.get("/api/v1/accounts?email=shared%40example.com&limit=1").await;
    assert_eq!(reply.body["paging"]["total"], 2);

    // A misspelt filter must not silently list everything.
    let reply = app.get("/api/v1/accounts?user_name=ann").await;
    reply.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert!(reply.message().contains("user_name"));
    let reply = app.get("/api/v1/accounts?limit=ten").await;
    reply.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert!(reply.message().contains("limit"));
}
