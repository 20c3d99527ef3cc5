use axum::http::StatusCode;
use serde_json::json;

use crate::support::{App, ids};

#[tokio::test]
async fn crud_round_trip() {
    let app = App::new();
    let reply =
        app.post("/api/v1/teams", json!({"team": {"name": "Sales", "ext_ref": "g-1", "description": "Sellers"}})).await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(reply.headers["location"], "/api/v1/teams/501");
    let team = &reply.body["team"];
    assert_eq!(team["id"], 501);
    assert_eq!(team["name"], "Sales");
    assert_eq!(team["ext_ref"], "g-1");
    assert_eq!(team["description"], "Sellers");
    assert_eq!(team["member_count"], 0);
    assert!(team["created_at"].is_string() && team["updated_at"].is_string());
    assert_eq!(team.as_object().map(|o| o.len()), Some(7));

    let reply = app.put("/api/v1/teams/501", json!({"team": {"name": "Sales EMEA"}})).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["team"]["name"], "Sales EMEA");
    assert_eq!(reply.body["team"]["ext_ref"], json!(null));
    assert_eq!(reply.body["team"]["description"], json!(null));
    assert_eq!(app.get("/api/v1/teams/501").await.body, reply.body);

    let reply = app.delete("/api/v1/teams/501").await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    app.get("/api/v1/teams/501").await.assert_error(StatusCode::NOT_FOUND, "not_found");
    app.delete("/api/v1/teams/501").await.assert_error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(app.team("Next").await, 502);
}

#[tokio::test]
async fn name_is_required_unique_and_strict() {
    let app = App::new();
    app.team("Sales").await;
    let reply = app.post("/api/v1/teams", json!({"team": {"name": "SALES"}})).await;
    reply.assert_error(StatusCode::CONFLICT, "duplicate");
    let reply = app.post("/api/v1/teams", json!({"team": {}})).await;
    reply.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert!(reply.message().contains("team.name"));
    let reply = app.post("/api/v1/teams", json!({"team": {"name": "x", "members": []}})).await;
    reply.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_eq!(reply.message(), "unknown field 'team.members'");

    let other = app.team("Other").await;
    let reply = app.put(&format!("/api/v1/teams/{other}"), json!({"team": {"name": "sales"}})).await;
    reply.assert_error(StatusCode::CONFLICT, "duplicate");
    // Renaming a team to itself in another case is fine.
    let reply = app.put(&format!("/api/v1/teams/{other}"), json!({"team": {"name": "OTHER"}})).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn list_with_paging_and_search() {
    let app = App::new();
    for i in 0..5 {
        app.team(&format!("Team {i}")).await;
    }
    let tagged = app.post("/api/v1/teams", json!({"team": {"name": "Tagged", "ext_ref": "abc"}})).await;
    assert_eq!(tagged.status, StatusCode::CREATED);

    let reply = app.get("/api/v1/teams?offset=1&limit=2").await;
    assert_eq!(ids(&reply.body, "teams", "id"), [502, 503]);
    assert_eq!(reply.body["paging"], json!({"offset": 1, "limit": 2, "total": 6}));
    let reply = app.get("/api/v1/teams?name=team%203").await;
    assert_eq!(ids(&reply.body, "teams", "id"), [504]);
    assert_eq!(reply.body["paging"]["total"], 1);
    let reply = app.get("/api/v1/teams?ext_ref=abc").await;
    assert_eq!(ids(&reply.body, "teams", "id"), [506]);
    let reply = app.get("/api/v1/teams?ext_ref=ABC").await;
    assert_eq!(reply.body["paging"]["total"], 0);
    let reply = app.get("/api/v1/teams?limit=999").await;
    assert_eq!(reply.body["paging"]["limit"], 200);
}
