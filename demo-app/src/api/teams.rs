//! `/api/v1/teams` handlers.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::{AppState, created};
use crate::error::Result;
use crate::extract::{Ids, JsonObject, Params};
use crate::model::{Team, TeamInput};
use crate::page::Paging;
use crate::store::TeamFilter;
use crate::time::Timestamp;

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 200;

#[derive(Serialize)]
struct One<'a> {
    team: &'a Team,
}

#[derive(Serialize)]
struct Many<'a> {
    teams: Vec<&'a Team>,
    paging: Paging,
}

/// `GET /teams?offset&limit&name&ext_ref`
pub async fn list(State(state): State<Arc<AppState>>, mut params: Params) -> Result<Response> {
    let page = params.take_page(DEFAULT_LIMIT, MAX_LIMIT)?;
    let filter = TeamFilter { name: params.take("name")?, ext_ref: params.take("ext_ref")? };
    params.finish()?;
    let store = state.store.read().await;
    let (teams, paging) = store.teams.list(&filter, page);
    Ok(Json(Many { teams, paging }).into_response())
}

/// `POST /teams`
pub async fn create(State(state): State<Arc<AppState>>, JsonObject(body): JsonObject) -> Result<Response> {
    let input = TeamInput::from_body(body)?;
    let mut store = state.store.write().await;
    let team = store.teams.create(input, Timestamp::now())?;
    tracing::debug!(id = team.id, name = %team.name, "team created");
    Ok(created(format!("/api/v1/teams/{}", team.id), One { team }))
}

/// `GET /teams/{id}`
pub async fn show(State(state): State<Arc<AppState>>, Ids(id): Ids<u64>) -> Result<Response> {
    let store = state.store.read().await;
    let team = store.teams.get(id)?;
    Ok(Json(One { team }).into_response())
}

/// `PUT /teams/{id}`
pub async fn replace(
    State(state): State<Arc<AppState>>,
    Ids(id): Ids<u64>,
    JsonObject(body): JsonObject,
) -> Result<Response> {
    let input = TeamInput::from_body(body)?;
    let mut store = state.store.write().await;
    let team = store.teams.replace(id, input, Timestamp::now())?;
    Ok(Json(One { team }).into_response())
}

/// `DELETE /teams/{id}`
pub async fn delete(State(state): State<Arc<AppState>>, Ids(id): Ids<u64>) -> Result<StatusCode> {
    let mut store = state.store.write().await;
    store.teams.remove(id)?;
    tracing::debug!(id, "team deleted");
    Ok(StatusCode::NO_CONTENT)
}
