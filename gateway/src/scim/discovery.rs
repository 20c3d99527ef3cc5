//! The discovery documents of RFC 7644 §4: `/ServiceProviderConfig`, `/ResourceTypes` and
//! `/Schemas`, built from the (per-tenant) resource schemas.
//!
//! Every function takes `base_url`, the absolute URL the tenant's SCIM endpoints live under
//! (`https://host/tenant/scim/v2`), because `meta.location` must be absolute (RFC 7643 §3.1).
//! Discovery endpoints support neither filtering, sorting nor paging (RFC 7644 §4), so their
//! lists always hold everything.

use serde_json::{Map, Value, json};

use super::error::ScimError;
use super::list::list_response;
use super::schema::{
    Attribute, RESOURCE_TYPE, ResourceSchema, SCHEMA, SERVICE_PROVIDER_CONFIG, Schema, resource_type_schema,
    schema_schema, service_provider_config_schema,
};

/// The capabilities announced on `/ServiceProviderConfig` (RFC 7643 §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderConfig {
    /// Human-readable help for the tenant's SCIM endpoint.
    pub documentation_uri: Option<String>,
    pub patch: bool,
    pub bulk: Bulk,
    pub filter: Filtering,
    pub change_password: bool,
    pub sort: bool,
    pub etag: bool,
}

/// Bulk support (RFC 7644 §3.7). The limits are published even when unsupported, as 0,
/// because RFC 7643 §5 marks them required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bulk {
    pub supported: bool,
    pub max_operations: usize,
    pub max_payload_size: usize,
}

/// Filter support (RFC 7644 §3.4.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filtering {
    pub supported: bool,
    /// The most resources one response holds; also the cap on `count`.
    pub max_results: usize,
}

impl Default for ProviderConfig {
    /// What the protocol core implements: PATCH, filtering (at most 200 results) and sorting;
    /// no bulk, no `ETag`s, no password change.
    fn default() -> Self {
        Self {
            documentation_uri: None,
            patch: true,
            bulk: Bulk { supported: false, max_operations: 0, max_payload_size: 0 },
            filter: Filtering { supported: true, max_results: 200 },
            change_password: false,
            sort: true,
            etag: false,
        }
    }
}

/// The `/ServiceProviderConfig` document. The only authentication scheme is the OAuth bearer
/// token (RFC 6750), which is what Entra ID and Okta send.
pub fn service_provider_config(config: &ProviderConfig, base_url: &str) -> Value {
    let supported = |on: bool| json!({ "supported": on });
    let mut doc = Map::new();
    doc.insert("schemas".to_owned(), json!([SERVICE_PROVIDER_CONFIG]));
    if let Some(uri) = &config.documentation_uri {
        doc.insert("documentationUri".to_owned(), Value::String(uri.clone()));
    }
    let capabilities = json!({
        "patch": supported(config.patch),
        "bulk": {
            "supported": config.bulk.supported,
            "maxOperations": config.bulk.max_operations,
            "maxPayloadSize": config.bulk.max_payload_size,
        },
        "filter": { "supported": config.filter.supported, "maxResults": config.filter.max_results },
        "changePassword": supported(config.change_password),
        "sort": supported(config.sort),
        "etag": supported(config.etag),
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "Authentication with an OAuth 2.0 bearer token in the Authorization header.",
            "specUri": "https://www.rfc-editor.org/info/rfc6750",
            "primary": true,
        }],
        "meta": meta("ServiceProviderConfig", &location(base_url, &["ServiceProviderConfig"])),
    });
    if let Value::Object(capabilities) = capabilities {
        doc.extend(capabilities);
    }
    Value::Object(doc)
}

/// One `/ResourceTypes/{name}` document (RFC 7643 §6). The resource type's id is its name.
///
/// An extension is published as `required` exactly when one of its attributes is required:
/// a resource lacking the extension would lack that attribute, so RFC 7643 §6's two notions
/// coincide, and `ResourceSchema` needs no second flag to keep in sync.
pub fn resource_type(resource: &ResourceSchema, base_url: &str) -> Value {
    let extensions: Vec<Value> = resource
        .extensions
        .iter()
        .map(|s| json!({ "schema": s.id, "required": s.attributes.iter().any(|a| a.required) }))
        .collect();
    json!({
        "schemas": [RESOURCE_TYPE],
        "id": resource.name,
        "name": resource.name,
        "description": resource.core.description,
        "endpoint": resource.endpoint,
        "schema": resource.core.id,
        "schemaExtensions": extensions,
        "meta": meta("ResourceType", &location(base_url, &["ResourceTypes", &resource.name])),
    })
}

/// The `/ResourceTypes` list.
pub fn resource_types(resources: &[ResourceSchema], base_url: &str) -> Value {
    let docs: Vec<Value> = resources.iter().map(|r| resource_type(r, base_url)).collect();
    let total = docs.len();
    list_response(docs, total, 1)
}

/// `/ResourceTypes/{id}`, or 404 when no resource type has that name (compared
/// case-insensitively, like everything else named in SCIM).
pub fn resource_type_by_id(resources: &[ResourceSchema], id: &str, base_url: &str) -> Result<Value, ScimError> {
    resources
        .iter()
        .find(|r| r.name.eq_ignore_ascii_case(id))
        .map(|r| resource_type(r, base_url))
        .ok_or_else(|| ScimError::not_found(format!("no resource type {id}")))
}

/// One `/Schemas/{urn}` document (RFC 7643 §7).
pub fn schema(schema: &Schema, base_url: &str) -> Value {
    let attributes: Vec<Value> = schema.attributes.iter().map(Attribute::to_json).collect();
    json!({
        "schemas": [SCHEMA],
        "id": schema.id,
        "name": schema.name,
        "description": schema.description,
        "attributes": attributes,
        "meta": meta("Schema", &location(base_url, &["Schemas", &schema.id])),
    })
}

/// The `/Schemas` list: every schema the resource types use, each once, followed by the three
/// schemas describing the discovery documents themselves (RFC 7643 §8.7.2), which clients and
/// conformance suites expect to find there.
pub fn schemas(resources: &[ResourceSchema], base_url: &str) -> Value {
    let docs: Vec<Value> = published(resources).iter().map(|s| schema(s, base_url)).collect();
    let total = docs.len();
    list_response(docs, total, 1)
}

/// `/Schemas/{urn}`, or 404 when no published schema has that URN (compared case-insensitively).
pub fn schema_by_id(resources: &[ResourceSchema], id: &str, base_url: &str) -> Result<Value, ScimError> {
    published(resources)
        .iter()
        .find(|s| s.id.eq_ignore_ascii_case(id))
        .map(|s| schema(s, base_url))
        .ok_or_else(|| ScimError::not_found(format!("no schema {id}")))
}

/// The schemas `/Schemas` publishes, in order, without duplicates: two resource types may
/// share an extension.
fn published(resources: &[ResourceSchema]) -> Vec<Schema> {
    let used = resources.iter().flat_map(|r| std::iter::once(&r.core).chain(&r.extensions)).cloned();
    let meta_schemas = [service_provider_config_schema(), resource_type_schema(), schema_schema()];
    let mut out: Vec<Schema> = Vec::new();
    for s in used.chain(meta_schemas) {
        if !out.iter().any(|o| o.id.eq_ignore_ascii_case(&s.id)) {
            out.push(s);
        }
    }
    out
}

fn meta(resource_type: &str, location: &str) -> Value {
    json!({ "resourceType": resource_type, "location": location })
}

/// `base_url` joined with `segments`, with exactly one `/` between parts.
fn location(base_url: &str, segments: &[&str]) -> String {
    let mut url = base_url.trim_end_matches('/').to_owned();
    for s in segments {
        url.push('/');
        url.push_str(s.trim_matches('/'));
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::schema::{ENTERPRISE_USER, GROUP, Keep, Selection, USER, group_resource, restrict, user_resource};

    const BASE: &str = "https://gw.example/acme/scim/v2";

    fn resources() -> Vec<ResourceSchema> {
        vec![user_resource(), group_resource()]
    }

    #[test]
    fn service_provider_config_announces_capabilities() {
        let doc = service_provider_config(&ProviderConfig::default(), BASE);
        assert_eq!(doc["schemas"], json!([SERVICE_PROVIDER_CONFIG]));
        assert_eq!(doc["patch"], json!({ "supported": true }));
        assert_eq!(doc["bulk"], json!({ "supported": false, "maxOperations": 0, "maxPayloadSize": 0 }));
        assert_eq!(doc["filter"], json!({ "supported": true, "maxResults": 200 }));
        assert_eq!(doc["changePassword"]["supported"], json!(false));
        assert_eq!(doc["sort"]["supported"], json!(true));
        assert_eq!(doc["etag"]["supported"], json!(false));
        assert_eq!(doc["authenticationSchemes"][0]["type"], "oauthbearertoken");
        assert_eq!(
            doc["meta"],
            json!({ "resourceType": "ServiceProviderConfig", "location": format!("{BASE}/ServiceProviderConfig") })
        );
        assert!(doc.get("documentationUri").is_none());
    }

    #[test]
    fn service_provider_config_documentation_uri_follows_schemas() {
        let config =
            ProviderConfig { documentation_uri: Some("https://docs.example/scim".into()), ..Default::default() };
        let doc = service_provider_config(&config, &format!("{BASE}/"));
        let keys: Vec<&String> = doc.as_object().map(|o| o.keys().collect()).unwrap_or_default();
        assert_eq!(keys[..2], ["schemas", "documentationUri"]);
        assert_eq!(doc["documentationUri"], "https://docs.example/scim");
        assert_eq!(doc["meta"]["location"], format!("{BASE}/ServiceProviderConfig"));
    }

    #[test]
    fn resource_types_list_user_and_group() {
        let doc = resource_types(&resources(), BASE);
        assert_eq!(doc["schemas"], json!(["urn:ietf:params:scim:api:messages:2.0:ListResponse"]));
        assert_eq!(doc["totalResults"], 2);
        assert_eq!(doc["itemsPerPage"], 2);
        let user = &doc["Resources"][0];
        assert_eq!(user["schemas"], json!([RESOURCE_TYPE]));
        assert_eq!(user["id"], "User");
        assert_eq!(user["endpoint"], "/Users");
        assert_eq!(user["schema"], USER);
        assert_eq!(user["schemaExtensions"], json!([{ "schema": ENTERPRISE_USER, "required": false }]));
        assert_eq!(
            user["meta"],
            json!({ "resourceType": "ResourceType", "location": format!("{BASE}/ResourceTypes/User") })
        );
        let group = &doc["Resources"][1];
        assert_eq!(group["schema"], GROUP);
        assert_eq!(group["schemaExtensions"], json!([]));
    }

    #[test]
    fn extension_with_a_required_attribute_is_required() {
        let keep = Selection::new(vec![
            Keep::attr("userName"),
            Keep::attr("employeeNumber").in_schema(ENTERPRISE_USER).required(true),
        ]);
        let doc = resource_type(&restrict(&user_resource(), &keep), BASE);
        assert_eq!(doc["schemaExtensions"], json!([{ "schema": ENTERPRISE_USER, "required": true }]));
    }

    #[test]
    fn resource_type_by_id_is_case_insensitive_and_404s() {
        let found = resource_type_by_id(&resources(), "group", BASE);
        assert_eq!(found.map(|d| d["name"].clone()), Ok(json!("Group")));
        let missing = resource_type_by_id(&resources(), "Device", BASE);
        assert_eq!(missing.map_err(|e| e.status), Err(404));
    }

    #[test]
    fn schemas_list_resource_and_discovery_schemas_once() {
        let twice = vec![user_resource(), user_resource(), group_resource()];
        let doc = schemas(&twice, BASE);
        let ids: Vec<&str> =
            doc["Resources"].as_array().into_iter().flatten().filter_map(|s| s["id"].as_str()).collect();
        assert_eq!(ids, [USER, ENTERPRISE_USER, GROUP, SERVICE_PROVIDER_CONFIG, RESOURCE_TYPE, SCHEMA]);
        assert_eq!(doc["totalResults"], 6);
        let names: Vec<&str> =
            doc["Resources"].as_array().into_iter().flatten().filter_map(|s| s["name"].as_str()).collect();
        assert!(names.ends_with(&["ServiceProviderConfig", "ResourceType", "Schema"]));
    }

    #[test]
    fn schema_document_carries_meta_and_attributes() {
        let doc = schema_by_id(&resources(), &USER.to_uppercase(), BASE).expect("User is published");
        assert_eq!(doc["schemas"], json!([SCHEMA]));
        assert_eq!(doc["id"], USER);
        assert_eq!(doc["meta"], json!({ "resourceType": "Schema", "location": format!("{BASE}/Schemas/{USER}") }));
        let user_name = &doc["attributes"][0];
        assert_eq!(user_name["name"], "userName");
        assert_eq!(user_name["required"], true);
        assert_eq!(user_name["uniqueness"], "server");
        let emails = doc["attributes"].as_array().into_iter().flatten().find(|a| a["name"] == "emails");
        let emails = emails.expect("User has emails");
        assert_eq!(emails["multiValued"], true);
        assert_eq!(emails["subAttributes"][2]["canonicalValues"], json!(["work", "home", "other"]));
    }

    #[test]
    fn schema_by_id_404s_for_unknown_and_dropped_schemas() {
        assert_eq!(schema_by_id(&resources(), "urn:x:unknown", BASE).map_err(|e| e.status), Err(404));
        let only_user_name = restrict(&user_resource(), &Selection::new(vec![Keep::attr("userName")]));
        assert!(schema_by_id(&[only_user_name], ENTERPRISE_USER, BASE).is_err());
    }

    #[test]
    fn restricted_schema_publishes_overrides() {
        let keep = Selection::new(vec![
            Keep::attr("userName"),
            Keep::sub("emails", "value"),
            Keep::sub("emails", "type").canonical(&["work"]),
        ]);
        let doc = schema_by_id(&[restrict(&user_resource(), &keep)], USER, BASE).expect("User is published");
        let names: Vec<&str> =
            doc["attributes"].as_array().into_iter().flatten().filter_map(|a| a["name"].as_str()).collect();
        assert_eq!(names, ["userName", "emails"]);
        assert_eq!(doc["attributes"][1]["subAttributes"][1]["canonicalValues"], json!(["work"]));
    }
}
