//! The outermost layer of the SCIM listener: for every request (health probes aside) a server
//! span named like `SCIM create Users`, continuing the caller's W3C `traceparent`, the request
//! metrics, and the `X-Request-Id` that ties a client's report to the span and the log lines.
//!
//! Everything recorded is bounded: the route template (never the path with its ids), a tenant
//! the configuration knows (else `unknown`), the resource type and operation from fixed sets.
//!
//! It also resolves the tenant once for what runs inside: the request runs in the
//! `telemetry::personal` scope of its tenant's `log_personal_data`, and its [`RequestId`] is in the
//! request's extensions.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::{KeyValue, StringValue};
use tracing::Instrument as _;

use super::AppState;
use super::response::ErrorType;
use crate::mapping::ResourceKind;
use crate::telemetry::metrics::{self, UNKNOWN};
use crate::telemetry::trace::{self, Span};
use crate::telemetry::{keep, personal};

/// Our request id: taken from the request when it is a sane one, else made; always answered.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The id Entra ID gives each provisioning call and shows in its provisioning logs.
const CLIENT_REQUEST_ID: HeaderName = HeaderName::from_static("client-request-id");
/// The longest request id taken from a client.
const MAX_ID_LEN: usize = 128;

/// The request's id (the `X-Request-Id` answered), in the request's extensions for the handlers
/// (the audit trail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// What a request is, in words from fixed sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Kind {
    operation: &'static str,
    resource: &'static str,
    /// A SCIM endpoint (named `SCIM <operation> <resource>`), not the token endpoint or a miss.
    scim: bool,
}

/// The operation and resource type of a route template and its `{endpoint}`.
fn classify(method: &Method, route: Option<&str>, endpoint: Option<&str>) -> Kind {
    let unknown = Kind { operation: UNKNOWN, resource: UNKNOWN, scim: false };
    let Some(route) = route else { return unknown };
    if route == "/{tenant}/oauth/token" {
        return Kind { operation: "token", resource: "oauth", scim: false };
    }
    let Some(rest) = route.strip_prefix("/{tenant}/scim/v2") else { return unknown };
    let resource = endpoint.and_then(ResourceKind::from_endpoint).map_or(UNKNOWN, ResourceKind::endpoint);
    let by_method = |m: &Method| match *m {
        Method::GET => "get",
        Method::POST => "create",
        Method::PUT => "replace",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => UNKNOWN,
    };
    let (operation, resource) = match (rest, method) {
        ("/ServiceProviderConfig", &Method::GET) => ("get", "ServiceProviderConfig"),
        ("/ResourceTypes" | "/ResourceTypes/{name}", &Method::GET) => ("get", "ResourceTypes"),
        ("/Schemas" | "/Schemas/{id}", &Method::GET) => ("get", "Schemas"),
        ("/Bulk", &Method::POST) => ("bulk", "Bulk"),
        ("/Me", m) => (by_method(m), "Me"),
        ("/.search", &Method::POST) => ("search", "all"),
        ("/{endpoint}", &Method::GET) => ("list", resource),
        ("/{endpoint}", &Method::POST) => ("create", resource),
        ("/{endpoint}/.search", &Method::POST) => ("search", resource),
        ("/{endpoint}/{id}", m) => (by_method(m), resource),
        ("/{endpoint}/{id}/{*rest}", &Method::GET) => ("get", resource),
        _ => (UNKNOWN, UNKNOWN),
    };
    Kind { operation, resource, scim: true }
}

/// A client's id worth keeping: short, and only characters safe in a header and a log line.
fn sane_id(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let v = headers.get(name)?.to_str().ok()?;
    let ok = !v.is_empty()
        && v.len() <= MAX_ID_LEN
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    ok.then(|| v.to_owned())
}

/// The layer: see the module documentation.
pub async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned());
    if matches!(route.as_deref(), Some("/healthz" | "/readyz")) {
        return next.run(req).await;
    }
    let start = Instant::now();
    let (mut parts, body) = req.into_parts();
    let params = <RawPathParams as axum::extract::FromRequestParts<()>>::from_request_parts(&mut parts, &()).await;
    let param = |name: &str| params.as_ref().ok().and_then(|p| p.iter().find(|(k, _)| *k == name).map(|(_, v)| v));
    let kind = classify(&parts.method, route.as_deref(), param("endpoint"));
    // Only a configured tenant becomes a label value: a made-up one in the URL must not.
    let configured = param("tenant").and_then(|id| state.registry.load().get(id).cloned());
    let personal_data = configured.as_ref().is_some_and(|t| t.options.log_personal_data);
    let label = configured.as_ref().map(|t| &t.label);
    let tenant: StringValue = label.map_or(StringValue::from(UNKNOWN), |l| Arc::clone(l).into());
    let request_id = sane_id(&parts.headers, &REQUEST_ID).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    parts.extensions.insert(RequestId(request_id.clone()));
    let client_request_id = sane_id(&parts.headers, &CLIENT_REQUEST_ID);
    let span = Span::server(
        &parts.headers,
        !keep::is_change(kind.operation),
        || match (kind.scim, &route) {
            (true, _) => trace::name("SCIM", trace::name(kind.operation, kind.resource)).into(),
            (false, Some(route)) => format!("{} {route}", parts.method).into(),
            (false, None) => parts.method.to_string().into(),
        },
        || {
            // Room for what is added when the answer is known: no reallocation then.
            let mut attributes = Vec::with_capacity(10);
            attributes.extend([
                KeyValue::new("http.request.method", trace::http_method(&parts.method)),
                KeyValue::new("scimbridge.tenant", tenant.clone()),
                KeyValue::new("scim.resource_type", kind.resource),
                KeyValue::new("scim.operation", kind.operation),
                KeyValue::new("scimbridge.request_id", request_id.clone()),
            ]);
            if let Some(route) = &route {
                attributes.push(KeyValue::new("http.route", route.clone()));
            }
            if let Some(id) = &client_request_id {
                attributes.push(KeyValue::new("scimbridge.client_request_id", id.clone()));
            }
            attributes
        },
    );
    // The log's context: every line the request writes names it and its tenant.
    let logged = tracing::info_span!(
        "request",
        scimbridge.tenant = tenant.as_str(),
        scim.operation = kind.operation,
        scim.resource_type = kind.resource,
        scimbridge.request_id = %request_id,
        scimbridge.client_request_id = client_request_id,
    );

    let handled = span.run(next.run(Request::from_parts(parts, body))).instrument(logged);
    let mut response = personal::scope(personal_data, handled).await;

    let status = response.status();
    span.set(|| KeyValue::new("http.response.status_code", i64::from(status.as_u16())));
    if let Some(ErrorType(Some(t))) = response.extensions().get::<ErrorType>() {
        span.set(|| KeyValue::new("scim.error_type", t.as_str()));
    }
    if status.is_server_error() {
        span.fail(|| status.as_str().to_owned().into());
    }
    span.end();
    metrics::get().request(label, kind.resource, kind.operation, status.as_u16(), start.elapsed());
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(method: Method, route: &str, endpoint: Option<&str>) -> (&'static str, &'static str) {
        let kind = classify(&method, Some(route), endpoint);
        (kind.operation, kind.resource)
    }

    #[test]
    fn routes_become_operations_and_resource_types() {
        let base = "/{tenant}/scim/v2";
        let r = |p: &str| format!("{base}{p}");
        assert_eq!(k(Method::POST, &r("/{endpoint}"), Some("Users")), ("create", "Users"));
        assert_eq!(k(Method::GET, &r("/{endpoint}"), Some("Groups")), ("list", "Groups"));
        assert_eq!(k(Method::PATCH, &r("/{endpoint}/{id}"), Some("Users")), ("patch", "Users"));
        assert_eq!(k(Method::DELETE, &r("/{endpoint}/{id}"), Some("Groups")), ("delete", "Groups"));
        assert_eq!(k(Method::POST, &r("/{endpoint}/.search"), Some("Users")), ("search", "Users"));
        assert_eq!(k(Method::GET, &r("/Schemas/{id}"), None), ("get", "Schemas"));
        assert_eq!(k(Method::POST, &r("/Bulk"), None), ("bulk", "Bulk"));
        assert_eq!(k(Method::POST, "/{tenant}/oauth/token", None), ("token", "oauth"));
    }

    #[test]
    fn nothing_from_the_request_becomes_a_value() {
        let base = "/{tenant}/scim/v2/{endpoint}";
        assert_eq!(k(Method::GET, base, Some("Widgets")), ("list", UNKNOWN), "an unknown endpoint");
        assert_eq!(k(Method::PUT, base, Some("Users")), (UNKNOWN, UNKNOWN), "a method the route refuses");
        assert_eq!(classify(&Method::GET, None, Some("Users")).operation, UNKNOWN, "no route matched");
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_static("abc-123_x.y:z"));
        assert_eq!(sane_id(&h, &REQUEST_ID).as_deref(), Some("abc-123_x.y:z"));
        h.insert(REQUEST_ID, HeaderValue::from_static("with space"));
        assert_eq!(sane_id(&h, &REQUEST_ID), None);
        h.insert(REQUEST_ID, HeaderValue::from_str(&"a".repeat(MAX_ID_LEN + 1)).unwrap());
        assert_eq!(sane_id(&h, &REQUEST_ID), None);
    }
}
