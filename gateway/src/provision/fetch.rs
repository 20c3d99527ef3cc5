//! Calls to the app on behalf of one operation: rendering, sending, error translation, and paging
//! through list answers. The one place where a tenant's mapping meets its backend.

use serde_json::Value;

use crate::backend::{AppResponse, BackendError};
use crate::mapping::call::{AppRequest, Call};
use crate::mapping::pointer::Pointer;
use crate::mapping::spec::PagingStyle;
use crate::mapping::template::{Context, StrTemplate};
use crate::scim::error::ScimError;
use crate::telemetry::personal;
use crate::tenant::Tenant;

/// Paging of a list call, as the mapping describes it.
pub struct Paging<'a> {
    pub call: &'a Call,
    pub items: &'a Pointer,
    pub total: Option<&'a Pointer>,
    pub paging: &'a crate::mapping::Paging,
    /// Literal query parameters added to every page (a tenant's scope in a shared app).
    pub scope_query: &'a [(String, String)],
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
        BackendError::Throttled(wait) => ScimError::status(
            503,
            format!("{what}: the application's call limit is reached and the wait would be too long; the call was not sent, retry later"),
        )
        .with_retry_after(*wait),
    }
}

/// Renders a call into a request.
fn render(
    tenant: &Tenant,
    call: &Call,
    ctx: &Context,
    extra_query: &[(String, StrTemplate)],
    what: &str,
) -> Result<AppRequest, ScimError> {
    call.render(ctx, &tenant.mapping.headers, extra_query).map_err(|e| {
        ScimError::status(
            500,
            format!("{what}: mapping `{}` could not render the call: {}", tenant.mapping.name, e.message),
        )
    })
}

/// Sends a rendered request; any HTTP answer is returned, transport failures are SCIM errors.
async fn send_request(tenant: &Tenant, req: &AppRequest, what: &str) -> Result<AppResponse, ScimError> {
    tracing::debug!(tenant = %tenant.id, method = %req.method, target = %personal(call_target(tenant, req)), "app call");
    // Boxed: an app call's future (retries, limit wait, the HTTP exchange) is large, and the
    // futures of the operations around it would each hold, and copy, all of it.
    Box::pin(tenant.backend.send(req)).await.map_err(|e| transport_error(&e, what))
}

/// A call's path and query (unencoded) for the log: personal data, as paths and searches name
/// people (`/users/ada`, `?login=ada`). Should a mapping put a credential there rather than in a
/// header, its value is masked, so even a tenant that logs personal data logs no secret.
fn call_target(tenant: &Tenant, req: &AppRequest) -> String {
    let mut text = req.path.clone();
    for (i, (k, v)) in req.query.iter().enumerate() {
        text.push(if i == 0 { '?' } else { '&' });
        text.push_str(k);
        text.push('=');
        text.push_str(v);
    }
    mask_credentials(text, &tenant.credentials)
}

/// `text` with every credential value of `credentials` (a tenant's) replaced by its name.
fn mask_credentials(mut text: String, credentials: &Value) -> String {
    for (name, value) in credentials.as_object().into_iter().flatten() {
        if let Some(secret) = value.as_str().filter(|s| !s.is_empty())
            && text.contains(secret)
        {
            text = text.replace(secret, &format!("<credentials.{name}>"));
        }
    }
    text
}

/// Renders and sends `call`; any HTTP answer is returned (for callers that judge statuses themselves).
pub async fn send_raw(
    tenant: &Tenant,
    call: &Call,
    ctx: &Context,
    extra_query: &[(String, StrTemplate)],
    what: &str,
) -> Result<AppResponse, ScimError> {
    send_request(tenant, &render(tenant, call, ctx, extra_query, what)?, what).await
}

/// Whether an answer counts as success for `call`.
pub fn succeeded(call: &Call, status: u16) -> bool {
    (200..300).contains(&status) || call.ok_statuses.contains(&status)
}

/// Renders and sends `call`, returning the answer on success (2xx or an `ok_statuses` code) and the
/// mapped SCIM error otherwise.
pub async fn send(
    tenant: &Tenant,
    call: &Call,
    ctx: &Context,
    extra_query: &[(String, StrTemplate)],
    what: &str,
) -> Result<AppResponse, ScimError> {
    let resp = send_raw(tenant, call, ctx, extra_query, what).await?;
    if succeeded(call, resp.status) {
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
    let size = paging.paging.max_page_size.max(1);
    let style = paging.paging.style;
    let mut items = Vec::with_capacity(want.min(1024));
    let mut total = None;
    let mut more = false;
    // Only offset paging can start anywhere; the others start at a page boundary (or the beginning)
    // and skip what precedes `offset`.
    let (mut pos, mut skip) = match style {
        PagingStyle::Offset => (offset, 0),
        PagingStyle::Page => ((offset / size) * size, offset % size),
        PagingStyle::Cursor | PagingStyle::Link | PagingStyle::None => (0, offset),
    };
    let mut cursor = Value::String(String::new());
    let mut next_url: Option<String> = None;
    while items.len() < want {
        let limit = match style {
            PagingStyle::Offset => size.min(want + skip - items.len()),
            _ => size,
        };
        let offset_v = Value::from(pos);
        let limit_v = Value::from(limit);
        let page_v = Value::from(pos / limit.max(1) + 1);
        let mut all: Vec<(&str, &Value)> = vars.to_vec();
        all.extend([("offset", &offset_v), ("limit", &limit_v), ("page", &page_v), ("cursor", &cursor)]);
        let mut req = render(tenant, paging.call, &Context::new(all), extra_query, what)?;
        req.query.extend(paging.scope_query.iter().cloned());
        if let Some(url) = next_url.take() {
            req.path = url;
            req.query.clear();
        }
        let resp = send_request(tenant, &req, what).await?;
        if !succeeded(paging.call, resp.status) {
            return Err(tenant.mapping.errors.translate(resp.status, &resp.body, what));
        }
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
        let skipped = skip.min(got);
        skip -= skipped;
        let room = want - items.len();
        // Items of this page beyond the window: the app has more, whatever else it says.
        let left_over = got - skipped > room;
        items.extend(page.into_iter().skip(skipped).take(room));
        pos += got;
        let exhausted = match style {
            PagingStyle::Offset | PagingStyle::Page => got < limit || total.is_some_and(|t| pos >= t),
            PagingStyle::Cursor => match paging.paging.next.as_ref().and_then(|p| p.get(&resp.body)) {
                Some(Value::String(s)) if !s.is_empty() => {
                    cursor = Value::String(s.clone());
                    false
                }
                Some(n @ Value::Number(_)) => {
                    cursor = n.clone();
                    false
                }
                _ => true,
            },
            PagingStyle::None => true,
            PagingStyle::Link => match next_link(&resp.headers) {
                Some(url) => {
                    next_url = Some(tenant.backend.resolve(&url));
                    false
                }
                None => true,
            },
        };
        if left_over {
            more = true;
            break;
        }
        if exhausted || got == 0 {
            more = false;
            break;
        }
        more = true;
    }
    Ok(Window { items, total, more })
}

/// The `rel="next"` target of an RFC 8288 `Link` header.
fn next_link(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers.get_all(reqwest::header::LINK).iter().filter_map(|v| v.to_str().ok()).find_map(|v| {
        v.split(',').find_map(|link| {
            let (target, params) = link.trim().split_once(';')?;
            let is_next = params.split(';').any(|p| {
                let p = p.trim().to_ascii_lowercase();
                p == "rel=\"next\"" || p == "rel=next"
            });
            is_next.then(|| target.trim().trim_start_matches('<').trim_end_matches('>').to_owned())
        })
    })
}

fn as_count(v: &Value) -> Option<usize> {
    match v {
        Value::Number(n) => n.as_u64().map(|n| n as usize),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links() {
        let mut h = reqwest::header::HeaderMap::new();
        h.append(
            reqwest::header::LINK,
            r#"<https://a/x?page=1>; rel="prev", <https://a/x?page=3>; rel="next""#.parse().unwrap(),
        );
        assert_eq!(next_link(&h).as_deref(), Some("https://a/x?page=3"));
        let mut h = reqwest::header::HeaderMap::new();
        h.append(reqwest::header::LINK, "</x?after=7>; rel=next".parse().unwrap());
        assert_eq!(next_link(&h).as_deref(), Some("/x?after=7"));
        assert_eq!(next_link(&reqwest::header::HeaderMap::new()), None);
    }

    #[test]
    fn credentials_never_reach_the_log_even_where_a_mapping_put_them() {
        let credentials = serde_json::json!({"api_key": "k-9f2", "user": "", "port": 8080});
        assert_eq!(
            mask_credentials("/v1/users?key=k-9f2&login=ada".to_owned(), &credentials),
            "/v1/users?key=<credentials.api_key>&login=ada"
        );
        assert_eq!(mask_credentials("/v1/users".to_owned(), &Value::Null), "/v1/users");
    }
}
