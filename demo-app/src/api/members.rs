//! `/api/v1/teams/{id}/members` handlers.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::{AppState, created};
use crate::error::Result;
use crate::extract::{Ids, JsonObject, Params};
use crate::model::Member;
use crate::page::Paging;
use crate::time::Timestamp;

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;

#[derive(Serialize)]
struct One {
    member: Member,
}

#[derive(Serialize)]
struct Many {
    members: Vec<Member>,
    paging: Paging,
}

/// `GET /teams/{id}/members?offset&limit`
pub async fn list(State(state): State<Arc<AppState>>, Ids(team_id): Ids<u64>, mut params: Params) -> Result<Response> {
    let page = params.take_page(DEFAULT_LIMIT, MAX_LIMIT)?;
    params.finish()?;
    let store = state.store.read().await;
    let (members, paging) = store.teams.members(team_id, page)?;
    Ok(Json(Many { members, paging }).into_response())
}

/// `POST /teams/{id}/members` with `{"account_id": N}`
pub async fn add(
    State(state): State<Arc<AppState>>,
    Ids(team_id): Ids<u64>,
    JsonObject(mut body): JsonObject,
) -> Result<Response> {
    let account_id = body.take_required_id("account_id")?;
    body.finish()?;
    let mut store = state.store.write().await;
    let member = store.add_member(team_id, account_id, Timestamp::now())?;
    Ok(created(format!("/api/v1/teams/{team_id}/members/{account_id}"), One { member }))
}

/// `PUT /teams/{id}/members` with `{"account_ids": [N, …]}`: replaces the whole membership.
pub async fn set(
    State(state): State<Arc<AppState>>,
    Ids(team_id): Ids<u64>,
    JsonObject(mut body): JsonObject,
) -> Result<StatusCode> {
    let ids = body.take_required_ids("account_ids")?;
    body.finish()?;
    state.store.write().await.set_members(team_id, &ids, Timestamp::now())?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /teams/{id}/members/{account_id}`
pub async fn remove(
    State(state): State<Arc<AppState>>,
    Ids((team_id, account_id)): Ids<(u64, u64)>,
) -> Result<StatusCode> {
    let mut store = state.store.write().await;
    store.teams.remove_member(team_id, account_id, Timestamp::now())?;
    Ok(StatusCode::NO_CONTENT)
}
