//! Calls to the app on behalf of one operation: rendering, sending, error translation, and paging
//! through list answers. The one place where a tenant's mapping meets its backend.

use serde_json::Value;

use crate::backend::BackendError;
use crate::mapping::call::Call;
use crate::mapping::pointer::Pointer;
use crate::mapping::spec::PagingStyle;
use crate::mapping::template::{Context, StrTemplate};
use crate::scim::error::ScimError;
use crate::tenant::Tenant;

/// Paging of a list call, as the mapping describes it.
pub struct Paging<'a> {
    pub call: &'a Call,
    pub items: &'a Pointer,
    pub total: Option<&'a Pointer>,
    pub page_size: usize,
    pub style: PagingStyle,
}

/// One window of a list: the items and the app's total, when it reports one.
pub struct Window {
    pub items: Vec<Value>,
    pub total: Option<usize>,
    /// Whether the app has more items after this window.
    pub more: bool,
}

/// A transport failure as the SCIM client sees it: no credentials, no internal addresses.
pub fn transport_error(e: &BackendError, what: &str) -> ScimError {
    match e {
        BackendError::Timeout(_) => ScimError::status(504, format!("{what}: the application did not answer in time")),
        BackendError::Connect(_) => ScimError::status(503, format!("{what}: the application is unreachable")),
        BackendError::Response(m) => ScimError::status(502, format!("{what}: {m}")),
        BackendError::Request(m) => ScimError::status(500, format!("{what}: {m}")),
    }
}

/// Renders and sends `call`, returning the answer's body on success (2xx or an `ok_statuses` code).
pub async fn send(
    tenant: &Tenant,
    call: &Call,
    ctx: &Context,
    extra_query: &[(String, StrTemplate)],
    what: &str,
) -> Result<crate::backend::AppResponse, ScimError> {
    let req = call.render(ctx, &tenant.mapping.headers, extra_query).map_err(|e| {
        ScimError::status(
            500,
            format!("{what}: mapping `{}` could not render the call: {}", tenant.mapping.name, e.message),
        )
    })?;
    tracing::debug!(tenant = %tenant.id, method = %req.method, path = %req.path, "app call");
    let resp = tenant.backend.send(&req).await.map_err(|e| transport_error(&e, what))?;
    if (200..300).contains(&resp.status) || call.ok_statuses.contains(&resp.status) {
        Ok(resp)
    } else {
        Err(tenant.mapping.errors.translate(resp.status, &resp.body, what))
    }
}

/// Reads up to `want` items starting at 0-based `offset`, page by page.
pub async fn window(
    tenant: &Tenant,
    paging: &Paging<'_>,
    vars: &[(&str, &Value)],
    extra_query: &[(String, StrTemplate)],
    offset: usize,
    want: usize,
    what: &str,
) -> Result<Window, ScimError> {
    let size = paging.page_size.max(1);
    let mut items = Vec::with_capacity(want.min(1024));
    let mut total = None;
    let mut more = false;
    // Page-numbered apps can only start at page boundaries: fetch from there and skip.
    let (mut pos, mut skip) = match paging.style {
        PagingStyle::Offset => (offset, 0),
        PagingStyle::Page => ((offset / size) * size, offset % size),
    };
    while items.len() < want {
        let limit = match paging.style {
            PagingStyle::Offset => size.min(want - items.len()),
            PagingStyle::Page => size,
        };
        let offset_v = Value::from(pos);
        let limit_v = Value::from(limit);
        let page_v = Value::from(pos / limit.max(1) + 1);
        let mut all: Vec<(&str, &Value)> = vars.to_vec();
        all.extend([("offset", &offset_v), ("limit", &limit_v), ("page", &page_v)]);
        let resp = send(tenant, paging.call, &Context::new(all), extra_query, what).await?;
        let page: Vec<Value> = match paging.items.get(&resp.body) {
            Some(Value::Array(a)) => a.clone(),
            // Many apps drop the key on an empty page.
            None | Some(Value::Null) => Vec::new(),
            Some(_) => {
                return Err(ScimError::status(
                    502,
                    format!("{what}: the application's list answer has no array at `{}`", paging.items),
                ));
            }
        };
        total = paging.total.and_then(|p| p.get(&resp.body)).and_then(as_count).or(total);
        let got = page.len();
        items.extend(page.into_iter().skip(skip).take(want - items.len()));
        skip = 0;
        pos += got;
        let exhausted = got < limit || total.is_some_and(|t| pos >= t);
        if exhausted {
            more = false;
            break;
        }
        more = true;
    }
    Ok(Window { items, total, more })
}

fn as_count(v: &Value) -> Option<usize> {
    match v {
        Value::Number(n) => n.as_u64().map(|n| n as usize),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}
