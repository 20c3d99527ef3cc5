//! Resource bodies as clients send them (POST, PUT): checked against a resource's schema and put
//! into canonical form before anything reaches an app.
//!
//! The rules follow RFC 7643/7644 and what Entra and Okta really send: attribute names match
//! case-insensitively and are rewritten to the schema's spelling; booleans may arrive as the strings
//! `"True"`/`"False"`; read-only attributes (`id`, `meta`, …) are ignored; attributes the schema does
//! not have are ignored too (reported back so the caller can log them); `null` means "not set".

use serde_json::{Map, Value};

use super::error::ScimError;
use super::schema::{AttrType, Attribute, Mutability, ResourceSchema};

/// URN every SCIM request body with resource attributes is identified by, per resource.
const SCHEMAS: &str = "schemas";

/// A body in canonical form and the attribute paths that were ignored.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalized {
    pub resource: Value,
    pub ignored: Vec<String>,
}

/// Checks and canonicalises a POST/PUT body.
pub fn normalize(body: &Value, schema: &ResourceSchema) -> Result<Normalized, ScimError> {
    let obj = body.as_object().ok_or_else(|| ScimError::invalid_syntax("the request body must be a JSON object"))?;
    if let Some(s) = obj.get(SCHEMAS) {
        let list = s.as_array().ok_or_else(|| ScimError::invalid_syntax("`schemas` must be an array of URNs"))?;
        let has_core = list.iter().any(|u| u.as_str().is_some_and(|u| u.eq_ignore_ascii_case(&schema.core.id)));
        if !has_core {
            return Err(ScimError::invalid_syntax(format!("`schemas` must contain `{}`", schema.core.id)));
        }
    }
    let mut out = Map::new();
    let mut ignored = Vec::new();
    let mut schemas = vec![Value::String(schema.core.id.clone())];
    for (key, value) in obj {
        if key.eq_ignore_ascii_case(SCHEMAS) || value.is_null() {
            continue;
        }
        if let Some(ext) = schema.extensions.iter().find(|e| e.id.eq_ignore_ascii_case(key)) {
            let inner = value
                .as_object()
                .ok_or_else(|| ScimError::invalid_syntax(format!("`{}` must be an object", ext.id)))?;
            let mut ext_out = Map::new();
            for (k, v) in inner {
                match ext.attribute(k) {
                    Some(def) => put(&mut ext_out, def, v, &format!("{}:{}", ext.id, def.name))?,
                    None => ignored.push(format!("{}:{k}", ext.id)),
                }
            }
            if !ext_out.is_empty() {
                schemas.push(Value::String(ext.id.clone()));
                out.insert(ext.id.clone(), Value::Object(ext_out));
            }
            continue;
        }
        match schema.find(None, key, None) {
            Some(def) => put(&mut out, def, value, &def.name)?,
            None => ignored.push(key.clone()),
        }
    }
    for def in schema.core.attributes.iter().filter(|a| a.required && a.mutability != Mutability::ReadOnly) {
        if !out.contains_key(&def.name) {
            return Err(ScimError::invalid_value(format!("`{}` is required", def.name)));
        }
    }
    let mut resource = Map::new();
    resource.insert(SCHEMAS.into(), Value::Array(schemas));
    resource.extend(out);
    Ok(Normalized { resource: Value::Object(resource), ignored })
}

/// Inserts a checked value under the attribute's canonical name, unless the attribute is read-only.
fn put(out: &mut Map<String, Value>, def: &Attribute, v: &Value, path: &str) -> Result<(), ScimError> {
    if def.mutability == Mutability::ReadOnly || v.is_null() {
        return Ok(());
    }
    let checked = check_value(def, v, path)?;
    if !is_empty(&checked) {
        out.insert(def.name.clone(), checked);
    }
    Ok(())
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Checks a value against an attribute definition, coercing what clients are known to send loosely.
pub fn check_value(def: &Attribute, v: &Value, path: &str) -> Result<Value, ScimError> {
    if def.multi_valued {
        let items: Vec<&Value> = match v {
            Value::Array(a) => a.iter().collect(),
            single => vec![single],
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items.into_iter().filter(|i| !i.is_null()) {
            let c = check_single(def, item, path)?;
            if !is_empty(&c) {
                out.push(c);
            }
        }
        return Ok(Value::Array(out));
    }
    check_single(def, v, path)
}

fn check_single(def: &Attribute, v: &Value, path: &str) -> Result<Value, ScimError> {
    let wrong = |what: &str| ScimError::invalid_value(format!("`{path}` must be {what}, got {}", kind_of(v)));
    match def.ty {
        AttrType::Complex => {
            let obj = v.as_object().ok_or_else(|| wrong("an object"))?;
            let mut out = Map::new();
            for (k, sv) in obj {
                // Unknown or read-only sub-attributes are dropped, as for top-level attributes.
                if let Some(sub) = def.sub(k)
                    && sub.mutability != Mutability::ReadOnly
                    && !sv.is_null()
                {
                    out.insert(sub.name.clone(), check_single(sub, sv, &format!("{path}.{}", sub.name))?);
                }
            }
            Ok(Value::Object(out))
        }
        AttrType::Boolean => match v {
            Value::Bool(_) => Ok(v.clone()),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
            _ => Err(wrong("a boolean")),
        },
        AttrType::Integer => match v {
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(v.clone()),
            _ => Err(wrong("an integer")),
        },
        AttrType::Decimal => match v {
            Value::Number(_) => Ok(v.clone()),
            _ => Err(wrong("a number")),
        },
        AttrType::String | AttrType::Reference | AttrType::Binary | AttrType::DateTime => match v {
            Value::String(_) => Ok(v.clone()),
            _ => Err(wrong("a string")),
        },
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::schema;
    use serde_json::json;

    fn user() -> ResourceSchema {
        schema::user_resource()
    }

    #[test]
    fn canonicalises_and_coerces() {
        let body = json!({
            "schemas": [schema::USER, schema::ENTERPRISE_USER],
            "USERNAME": "b@x", "active": "False", "id": "ignored", "meta": {"resourceType": "User"},
            "emails": [{"value": "b@x", "type": "work", "primary": "True"}],
            "name": {"givenName": "B", "bogus": 1},
            "roles": [], "frobnicate": 1, "nickName": null,
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D"}
        });
        let n = normalize(&body, &user()).unwrap();
        assert_eq!(
            n.resource,
            json!({
                "schemas": [schema::USER, schema::ENTERPRISE_USER],
                "userName": "b@x", "active": false,
                "emails": [{"value": "b@x", "type": "work", "primary": true}],
                "name": {"givenName": "B"},
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D"}
            })
        );
        assert_eq!(n.ignored, vec!["frobnicate".to_owned()]);
    }

    #[test]
    fn rejects_bad_input() {
        let s = user();
        assert_eq!(normalize(&json!([]), &s).unwrap_err().status, 400);
        let e = normalize(&json!({"userName": "x", "active": "maybe"}), &s).unwrap_err();
        assert!(e.detail.contains("active"));
        let e = normalize(&json!({"displayName": "x"}), &s).unwrap_err();
        assert!(e.detail.contains("userName"));
        let e = normalize(&json!({"schemas": ["urn:x"], "userName": "x"}), &s).unwrap_err();
        assert!(e.detail.contains("schemas"));
    }
}
