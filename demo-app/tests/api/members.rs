use axum::http::StatusCode;
use serde_json::json;

use crate::support::{App, ids};

#[tokio::test]
async fn add_list_and_remove() {
    let app = App::new();
    let team = app.team("Sales").await;
    let (a, b) = (app.account("a", json!({})).await, app.account("b", json!({})).await);
    let members = format!("/api/v1/teams/{team}/members");

    // Added out of order, listed by account id.
    for id in [b, a] {
        let reply = app.post(&members, json!({"account_id": id})).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        assert_eq!(reply.body["member"]["account_id"], id);
        assert!(reply.body["member"]["added_at"].is_string());
    }
    let reply = app.get(&members).await;
    assert_eq!(ids(&reply.body, "members", "account_id"), [a, b]);
    assert_eq!(reply.body["paging"], json!({"offset": 0, "limit": 50, "total": 2}));
    let team_body = app.get(&format!("/api/v1/teams/{team}")).await.body;
    assert_eq!(team_body["team"]["member_count"], 2);

    let reply = app.delete(&format!("{members}/{a}")).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    app.delete(&format!("{members}/{a}")).await.assert_error(StatusCode::NOT_FOUND, "not_found");
    let reply = app.get(&members).await;
    assert_eq!(ids(&reply.body, "members", "account_id"), [b]);
}

#[tokio::test]
async fn duplicate_missing_account_and_missing_team() {
    let app = App::new();
    let team = app.team("Sales").await;
    let a = app.account("a", json!({})).await;
    let members = format!("/api/v1/teams/{team}/members");
    assert_eq!(app.post(&members, json!({"account_id": a})).await.status, StatusCode::CREATED);
    let reply = app.post(&members, json!({"account_id": a})).await;
    reply.assert_error(StatusCode::CONFLICT, "already_member");

    let reply = app.post(&members, json!({"account_id": 9999})).await;
    reply.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert!(reply.message().contains("account_id"));
    let reply = app.post(&members, json!({"account_id": "1001"})).await;
    reply.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    let reply = app.post(&members, json!({"account_id": a, "role": "owner"})).await;
    reply.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_eq!(reply.message(), "unknown field 'role'");

    let reply = app.post("/api/v1/teams/999/members", json!({"account_id": a})).await;
    reply.assert_error(StatusCode::NOT_FOUND, "not_found");
    app.get("/api/v1/teams/999/members").await.assert_error(StatusCode::NOT_FOUND, "not_found");
    app.delete(&format!("/api/v1/teams/999/members/{a}")).await.assert_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn deleting_an_account_removes_it_from_every_team() {
    let app = App::new();
    let (t1, t2) = (app.team("One").await, app.team("Two").await);
    let (a, b) = (app.account("a", json!({})).await, app.account("b", json!({})).await);
    for (team, account) in [(t1, a), (t1, b), (t2, a)] {
        let reply = app.post(&format!("/api/v1/teams/{team}/members"), json!({"account_id": account})).await;
        assert_eq!(reply.status, StatusCode::CREATED);
    }
    assert_eq!(app.delete(&format!("/api/v1/accounts/{a}")).await.status, StatusCode::NO_CONTENT);
    let reply = app.get(&format!("/api/v1/teams/{t1}/members")).await;
    assert_eq!(ids(&reply.body, "members", "account_id"), [b]);
    let reply = app.get(&format!("/api/v1/teams/{t2}")).await;
    assert_eq!(reply.body["team"]["member_count"], 0);
}

#[tokio::test]
async fn member_paging_allows_up_to_1000() {
    let app = App::new();
    let team = app.team("Big").await;
    let members = format!("/api/v1/teams/{team}/members");
    for i in 0..1005 {
        let id = app.account(&format!("u{i}"), json!({})).await;
        let reply = app.post(&members, json!({"account_id": id})).await;
        assert_eq!(reply.status, StatusCode::CREATED);
    }
    let reply = app.get(&format!("{members}?limit=5000")).await;
    assert_eq!(reply.body["paging"], json!({"offset": 0, "limit": 1000, "total": 1005}));
    assert_eq!(reply.body["members"].as_array().map(Vec::len), Some(1000));
    let reply = app.get(&format!("{members}?offset=1000")).await;
    assert_eq!(ids(&reply.body, "members", "account_id"), (2001..=2005).collect::<Vec<_>>());
}
