//! `/api/v1/accounts` handlers.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::{AppState, created};
use crate::error::Result;
use crate::extract::{Ids, JsonObject, Params};
use crate::model::{Account, AccountInput};
use crate::page::Paging;
use crate::store::AccountFilter;
use crate::time::Timestamp;

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 200;

#[derive(Serialize)]
struct One<'a> {
    account: &'a Account,
}

#[derive(Serialize)]
struct Many<'a> {
    accounts: Vec<&'a Account>,
    paging: Paging,
}

/// `GET /accounts?offset&limit&login&email&ext_ref`
pub async fn list(State(state): State<Arc<AppState>>, mut params: Params) -> Result<Response> {
    let page = params.take_page(DEFAULT_LIMIT, MAX_LIMIT)?;
    let filter =
        AccountFilter { login: params.take("login")?, email: params.take("email")?, ext_ref: params.take("ext_ref")? };
    params.finish()?;
    let store = state.store.read().await;
    let (accounts, paging) = store.accounts.list(&filter, page);
    Ok(Json(Many { accounts, paging }).into_response())
}

/// `POST /accounts`
pub async fn create(State(state): State<Arc<AppState>>, JsonObject(body): JsonObject) -> Result<Response> {
    let input = AccountInput::from_body(body)?;
    let account = {
        let mut store = state.store.write().await;
        store.accounts.create(input, Timestamp::now())?.clone()
    };
    tracing::debug!(id = account.id, login = %account.login, "account created");
    if !state.create_delay.is_zero() {
        tokio::time::sleep(state.create_delay).await;
    }
    Ok(created(format!("/api/v1/accounts/{}", account.id), One { account: &account }))
}

/// `GET /accounts/{id}`
pub async fn show(State(state): State<Arc<AppState>>, Ids(id): Ids<u64>) -> Result<Response> {
    let store = state.store.read().await;
    let account = store.accounts.get(id)?;
    Ok(Json(One { account }).into_response())
}

/// `PUT /accounts/{id}`
pub async fn replace(
    State(state): State<Arc<AppState>>,
    Ids(id): Ids<u64>,
    JsonObject(body): JsonObject,
) -> Result<Response> {
    let input = AccountInput::from_body(body)?;
    let mut store = state.store.write().await;
    let account = store.accounts.replace(id, input, Timestamp::now())?;
    Ok(Json(One { account }).into_response())
}

/// `DELETE /accounts/{id}`
pub async fn delete(State(state): State<Arc<AppState>>, Ids(id): Ids<u64>) -> Result<StatusCode> {
    let mut store = state.store.write().await;
    store.delete_account(id, Timestamp::now())?;
    tracing::debug!(id, "account deleted");
    Ok(StatusCode::NO_CONTENT)
}
