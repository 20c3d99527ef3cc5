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

#[derive(Serialize)]
struct Feed<'a> {
    accounts: Vec<&'a Account>,
    /// The cursor of the next page: pass it as `after`. Absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// `GET /accounts/feed?after&limit`: cursor paging. Each page names the next by `next` in the body
/// and by a `Link: <…>; rel="next"` header (RFC 8288), for clients of either style.
pub async fn feed(State(state): State<Arc<AppState>>, mut params: Params) -> Result<Response> {
    let after = match params.take("after")? {
        Some(a) if !a.is_empty() => {
            a.parse::<u64>().map_err(|_| crate::error::Error::Invalid("`after` must be an account id".into()))?
        }
        _ => 0,
    };
    let limit = params.take_page(DEFAULT_LIMIT, MAX_LIMIT)?.limit;
    params.finish()?;
    let store = state.store.read().await;
    let (accounts, more) = store.accounts.after(after, limit);
    let next = if more { accounts.last().map(|a| a.id.to_string()) } else { None };
    let mut response = Json(Feed { accounts, next: next.clone() }).into_response();
    if let Some(n) = next
        && let Ok(v) = format!("</api/v1/accounts/feed?after={n}&limit={limit}>; rel=\"next\"").parse()
    {
        response.headers_mut().insert(axum::http::header::LINK, v);
    }
    Ok(response)
}

/// `GET /accounts?offset&limit&login&email&ext_ref&org`
pub async fn list(State(state): State<Arc<AppState>>, mut params: Params) -> Result<Response> {
    let page = params.take_page(DEFAULT_LIMIT, MAX_LIMIT)?;
    let filter = AccountFilter {
        login: params.take("login")?,
        email: params.take("email")?,
        ext_ref: params.take("ext_ref")?,
        org: params.take("org")?,
    };
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
