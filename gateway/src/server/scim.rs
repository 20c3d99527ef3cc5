//! The SCIM endpoints of a tenant (`/{tenant}/scim/v2/...`): thin handlers that authenticate, parse,
//! and hand over to `provision` or `scim::discovery`. Every change (and every operation of a bulk
//! request) ends with its audit event, failed or not (`audited`).

use std::future::Future;

use axum::Extension;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use bytes::Bytes;
use serde_json::Value;

use super::AppState;
use super::extract::{Authorized, json_body, query_pairs};
use super::observe::RequestId;
use super::response::{ErrorResponse, Scim, ScimResult};
use crate::audit::{self, Change, Operation, Outcome};
use crate::backend::tally::{self, Tally};
use crate::mapping::ResourceKind;
use crate::provision::Written;
use crate::provision::bulk::BulkLimits;
use crate::provision::bulk::Done;
use crate::scim::discovery::{self, Bulk, Filtering, ProviderConfig};
use crate::scim::error::{ScimError, ScimType};
use crate::scim::list::ListQuery;
use crate::scim::schema::ResourceSchema;
use crate::telemetry::metrics::UNKNOWN;
use crate::telemetry::{self, personal};
use crate::tenant::Tenant;

fn kind(endpoint: &str) -> Result<ResourceKind, ErrorResponse> {
    ResourceKind::from_endpoint(endpoint)
        .ok_or_else(|| ErrorResponse(ScimError::not_found(format!("no endpoint `/{endpoint}`"))))
}

fn if_match(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok())
}

fn written(w: Written, status: StatusCode) -> Scim {
    Scim { status, body: Some(w.resource), location: Some(w.location), etag: Some(w.etag) }
}

fn schemas_of(tenant: &Tenant) -> Vec<ResourceSchema> {
    tenant.mapping.resources().map(|r| r.schema.clone()).collect()
}

/// What the gateway supports for this tenant, as `ServiceProviderConfig` publishes it.
pub fn provider_config(state: &AppState, tenant: &Tenant) -> ProviderConfig {
    ProviderConfig {
        documentation_uri: None,
        patch: tenant.mapping.resources().all(|r| !r.update.is_empty()),
        bulk: Bulk {
            supported: true,
            max_operations: state.limits.bulk.max_operations,
            max_payload_size: state.limits.bulk.max_payload_size,
        },
        filter: Filtering { supported: true, max_results: tenant.options.max_results },
        change_password: false,
        sort: true,
        etag: true,
    }
}

/// `GET /ServiceProviderConfig`.
pub async fn service_provider_config(State(state): State<AppState>, auth: Authorized) -> ScimResult {
    let base = state.provisioner.base_url(&auth.tenant.id);
    Ok(Scim::ok(discovery::service_provider_config(&provider_config(&state, &auth.tenant), &base)))
}

/// `GET /ResourceTypes`.
pub async fn resource_types(State(state): State<AppState>, auth: Authorized) -> ScimResult {
    let base = state.provisioner.base_url(&auth.tenant.id);
    Ok(Scim::ok(discovery::resource_types(&schemas_of(&auth.tenant), &base)))
}

/// `GET /ResourceTypes/{name}`.
pub async fn resource_type(
    State(state): State<AppState>,
    auth: Authorized,
    Path((_, name)): Path<(String, String)>,
) -> ScimResult {
    let base = state.provisioner.base_url(&auth.tenant.id);
    Ok(Scim::ok(discovery::resource_type_by_id(&schemas_of(&auth.tenant), &name, &base)?))
}

/// `GET /Schemas`.
pub async fn schemas(State(state): State<AppState>, auth: Authorized) -> ScimResult {
    let base = state.provisioner.base_url(&auth.tenant.id);
    Ok(Scim::ok(discovery::schemas(&schemas_of(&auth.tenant), &base)))
}

/// `GET /Schemas/{urn}`.
pub async fn schema(
    State(state): State<AppState>,
    auth: Authorized,
    Path((_, id)): Path<(String, String)>,
) -> ScimResult {
    let base = state.provisioner.base_url(&auth.tenant.id);
    Ok(Scim::ok(discovery::schema_by_id(&schemas_of(&auth.tenant), &id, &base)?))
}

/// `GET /{Resources}`.
pub async fn list(
    State(state): State<AppState>,
    auth: Authorized,
    Path((_, endpoint)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> ScimResult {
    let kind = kind(&endpoint)?;
    let query = ListQuery::from_query(&query_pairs(q.as_deref()), auth.tenant.options.max_results)?;
    let ops = state.provisioner.resource(&auth.tenant, kind)?;
    Ok(Scim::ok(ops.list(&query).await?))
}

/// `POST /{Resources}/.search`.
pub async fn search(
    State(state): State<AppState>,
    auth: Authorized,
    Path((_, endpoint)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ScimResult {
    let kind = kind(&endpoint)?;
    let query = ListQuery::from_search(&json_body(&headers, &body)?, auth.tenant.options.max_results)?;
    let ops = state.provisioner.resource(&auth.tenant, kind)?;
    Ok(Scim::ok(ops.list(&query).await?))
}

/// `POST /{Resources}`.
pub async fn create(
    State(state): State<AppState>,
    auth: Authorized,
    Extension(request): Extension<RequestId>,
    Path((_, endpoint)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ScimResult {
    let body = json_body(&headers, &body);
    let change = change(&state, Operation::Create, &endpoint, None, body.as_ref().ok());
    let work = async {
        let kind = kind(&endpoint)?;
        let body = body?;
        let ops = state.provisioner.resource(&auth.tenant, kind)?;
        Ok(written(ops.create(&body).await?, StatusCode::CREATED))
    };
    audited(&state, &auth, &request, change, work).await
}

/// `GET /{Resources}/{id}`.
pub async fn get(
    State(state): State<AppState>,
    auth: Authorized,
    Path((_, endpoint, id)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
) -> ScimResult {
    let kind = kind(&endpoint)?;
    let query = ListQuery::from_query(&query_pairs(q.as_deref()), auth.tenant.options.max_results)?;
    let ops = state.provisioner.resource(&auth.tenant, kind)?;
    let w = ops.get(&id, &query.attributes, &query.excluded_attributes).await?;
    Ok(written(w, StatusCode::OK))
}

/// `PUT /{Resources}/{id}`.
pub async fn replace(
    State(state): State<AppState>,
    auth: Authorized,
    Extension(request): Extension<RequestId>,
    Path((_, endpoint, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ScimResult {
    let body = json_body(&headers, &body);
    let change = change(&state, Operation::Replace, &endpoint, Some(&id), body.as_ref().ok());
    let work = async {
        let kind = kind(&endpoint)?;
        let body = body?;
        let ops = state.provisioner.resource(&auth.tenant, kind)?;
        Ok(written(ops.replace(&id, &body, if_match(&headers)).await?, StatusCode::OK))
    };
    audited(&state, &auth, &request, change, work).await
}

/// `PATCH /{Resources}/{id}`.
pub async fn patch(
    State(state): State<AppState>,
    auth: Authorized,
    Extension(request): Extension<RequestId>,
    Path((_, endpoint, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ScimResult {
    let body = json_body(&headers, &body);
    let change = change(&state, Operation::Patch, &endpoint, Some(&id), body.as_ref().ok());
    let work = async {
        let kind = kind(&endpoint)?;
        let body = body?;
        let ops = state.provisioner.resource(&auth.tenant, kind)?;
        Ok(match ops.patch(&id, &body, if_match(&headers)).await? {
            Some(w) => written(w, StatusCode::OK),
            None => Scim::no_content(),
        })
    };
    audited(&state, &auth, &request, change, work).await
}

/// `DELETE /{Resources}/{id}`.
pub async fn delete(
    State(state): State<AppState>,
    auth: Authorized,
    Extension(request): Extension<RequestId>,
    Path((_, endpoint, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> ScimResult {
    let change = change(&state, Operation::Delete, &endpoint, Some(&id), None);
    let work = async {
        let kind = kind(&endpoint)?;
        let ops = state.provisioner.resource(&auth.tenant, kind)?;
        ops.delete(&id, if_match(&headers)).await?;
        Ok(Scim::no_content())
    };
    audited(&state, &auth, &request, change, work).await
}

/// `POST /Bulk`. Each operation that runs is audited on its own; a request refused as a whole is
/// one `bulk` event.
pub async fn bulk(
    State(state): State<AppState>,
    auth: Authorized,
    Extension(request): Extension<RequestId>,
    headers: HeaderMap,
    body: Bytes,
) -> ScimResult {
    let trace = trace();
    let on = state.audit.is_on();
    let mut report = |d: Done<'_>| {
        if on {
            let event = bulk_event(&auth, &request, trace, d);
            state.audit.record(event);
        }
    };
    let result = async {
        if body.len() > state.limits.bulk.max_payload_size {
            return Err(ScimError::status(413, "the bulk request exceeds maxPayloadSize").into());
        }
        let body = json_body(&headers, &body)?;
        let limits: BulkLimits = state.limits.bulk;
        Ok(Scim::ok(state.provisioner.bulk(&auth.tenant, &body, limits, &mut report).await?))
    }
    .await;
    if let (true, Err(ErrorResponse(e))) = (on, &result) {
        let change = Change::new(Operation::Bulk, "Bulk", None);
        state.audit.record(event(&auth, &request, trace, change, outcome(Err(e), Tally::default())));
    }
    result
}

/// The resource type of an endpoint as spans and metrics name it, `unknown` for any other.
fn endpoint_type(endpoint: &str) -> &'static str {
    ResourceKind::from_endpoint(endpoint).map_or(UNKNOWN, ResourceKind::endpoint)
}

/// What a change request is about, when the audit trail is on: the body's attribute names, and
/// its values where the tenant allows personal data.
fn change(
    state: &AppState,
    operation: Operation,
    endpoint: &str,
    id: Option<&str>,
    body: Option<&Value>,
) -> Option<Change> {
    state
        .audit
        .is_on()
        .then(|| Change::new(operation, endpoint_type(endpoint), id).with_body(body, personal::allowed()))
}

/// The outcome of a change that answered `result` after the app calls of `calls`.
fn outcome(result: Result<u16, &ScimError>, calls: Tally) -> Outcome {
    match result {
        Ok(status) => Outcome::new(status, None, calls),
        Err(e) => Outcome::new(e.status, e.scim_type.map(ScimType::as_str), calls),
    }
}

/// The request's place in its trace (the current span is the request's).
fn trace() -> Option<audit::Trace> {
    audit::Trace::of(&telemetry::trace::current()?)
}

fn event(
    auth: &Authorized,
    request: &RequestId,
    trace: Option<audit::Trace>,
    change: Change,
    outcome: Outcome,
) -> audit::Event {
    audit::Event::new(&auth.tenant.id, (&auth.principal).into(), &request.0, trace, change, outcome)
}

/// Runs a change, counting its app calls, and records its audit event whatever the outcome.
///
/// `work` goes to the heap first: a change's future is tens of kilobytes (its app calls and store
/// writes, nested), and every layer around it (the tally's scope, this function, the handler, the
/// middleware) would otherwise copy all of it when it moves (callgrind: memcpy was a fifth of a
/// PATCH's instructions).
fn audited<'a>(
    state: &'a AppState,
    auth: &'a Authorized,
    request: &'a RequestId,
    change: Option<Change>,
    work: impl Future<Output = ScimResult> + Send + 'a,
) -> impl Future<Output = ScimResult> + Send + 'a {
    let work = Box::pin(work);
    async move {
        // With the audit trail off, nothing is counted or built.
        let Some(change) = change else { return work.await };
        let (result, calls) = tally::counted(work).await;
        let (ended, created) = match &result {
            Ok(s) => (outcome(Ok(s.status.as_u16()), calls), s.body.as_ref().and_then(scim_id)),
            Err(ErrorResponse(e)) => (outcome(Err(e), calls), None),
        };
        let change = match (change.operation, created) {
            (Operation::Create, Some(id)) => Change { id: Some(id), ..change },
            _ => change,
        };
        state.audit.record(event(auth, request, trace(), change, ended));
        result
    }
}

/// The audit event of one bulk operation.
fn bulk_event(auth: &Authorized, request: &RequestId, trace: Option<audit::Trace>, d: Done<'_>) -> audit::Event {
    // `Done::method` is one of the four a bulk request may use.
    let operation = Operation::of_method(d.method).unwrap_or(Operation::Bulk);
    let resource = d.kind.map_or(UNKNOWN, ResourceKind::endpoint);
    let change = Change::new(operation, resource, d.id.as_deref())
        .with_bulk_id(d.bulk_id)
        .with_body(d.data.filter(|_| operation != Operation::Delete), personal::allowed());
    event(auth, request, trace, change, outcome(d.result, d.calls))
}

fn scim_id(body: &Value) -> Option<String> {
    body.get("id").and_then(Value::as_str).map(str::to_owned)
}

/// `/Me` is not provided: the gateway authenticates clients, not users.
pub async fn me(_auth: Authorized) -> ScimResult {
    Err(ScimError::status(501, "/Me is not supported").into())
}

/// `POST /.search` at the tenant root: one search across every resource type (RFC 7644 §3.4.3).
/// A type whose schema the filter does not fit contributes nothing rather than failing the search.
pub async fn root_search(
    State(state): State<AppState>,
    auth: Authorized,
    headers: HeaderMap,
    body: Bytes,
) -> ScimResult {
    let max = auth.tenant.options.max_results;
    let query = ListQuery::from_search(&json_body(&headers, &body)?, max)?;
    let per_type = ListQuery { start_index: 1, count: Some(max), ..query.clone() };
    let mut resources = Vec::new();
    let mut total = 0;
    for rm in auth.tenant.mapping.resources() {
        if let Some(f) = &query.filter
            && f.validate(&rm.schema).is_err()
        {
            continue;
        }
        let ops = state.provisioner.resource(&auth.tenant, rm.kind)?;
        let page = ops.list(&per_type).await?;
        total += page["totalResults"].as_u64().unwrap_or(0) as usize;
        if let Some(items) = page["Resources"].as_array() {
            resources.extend(items.iter().cloned());
        }
    }
    let range = query.page(resources.len(), max);
    let page = resources.get(range).map(<[_]>::to_vec).unwrap_or_default();
    Ok(Scim::ok(crate::scim::list::list_response(page, total, query.start_index)))
}

/// Any other path under a tenant.
pub async fn not_found(_auth: Authorized) -> ScimResult {
    Err(ScimError::not_found("no such SCIM endpoint").into())
}
