//! The SCIM endpoints of a tenant (`/{tenant}/scim/v2/...`): thin handlers that authenticate, parse,
//! and hand over to `provision` or `scim::discovery`.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use bytes::Bytes;

use super::AppState;
use super::extract::{Authorized, json_body, query_pairs};
use super::response::{ErrorResponse, Scim, ScimResult};
use crate::mapping::ResourceKind;
use crate::provision::Written;
use crate::provision::bulk::BulkLimits;
use crate::scim::discovery::{self, Bulk, Filtering, ProviderConfig};
use crate::scim::error::ScimError;
use crate::scim::list::ListQuery;
use crate::scim::schema::ResourceSchema;
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
    Path((_, endpoint)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ScimResult {
    let kind = kind(&endpoint)?;
    let body = json_body(&headers, &body)?;
    let ops = state.provisioner.resource(&auth.tenant, kind)?;
    Ok(written(ops.create(&body).await?, StatusCode::CREATED))
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
    Path((_, endpoint, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ScimResult {
    let kind = kind(&endpoint)?;
    let body = json_body(&headers, &body)?;
    let ops = state.provisioner.resource(&auth.tenant, kind)?;
    Ok(written(ops.replace(&id, &body, if_match(&headers)).await?, StatusCode::OK))
}

/// `PATCH /{Resources}/{id}`.
pub async fn patch(
    State(state): State<AppState>,
    auth: Authorized,
    Path((_, endpoint, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ScimResult {
    let kind = kind(&endpoint)?;
    let body = json_body(&headers, &body)?;
    let ops = state.provisioner.resource(&auth.tenant, kind)?;
    Ok(match ops.patch(&id, &body, if_match(&headers)).await? {
        Some(w) => written(w, StatusCode::OK),
        None => Scim::no_content(),
    })
}

/// `DELETE /{Resources}/{id}`.
pub async fn delete(
    State(state): State<AppState>,
    auth: Authorized,
    Path((_, endpoint, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> ScimResult {
    let kind = kind(&endpoint)?;
    let ops = state.provisioner.resource(&auth.tenant, kind)?;
    ops.delete(&id, if_match(&headers)).await?;
    Ok(Scim::no_content())
}

/// `POST /Bulk`.
pub async fn bulk(State(state): State<AppState>, auth: Authorized, headers: HeaderMap, body: Bytes) -> ScimResult {
    if body.len() > state.limits.bulk.max_payload_size {
        return Err(ScimError::status(413, "the bulk request exceeds maxPayloadSize").into());
    }
    let body = json_body(&headers, &body)?;
    let limits: BulkLimits = state.limits.bulk;
    Ok(Scim::ok(state.provisioner.bulk(&auth.tenant, &body, limits).await?))
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
