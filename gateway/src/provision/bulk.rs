//! `/Bulk` (RFC 7644 §3.7): many operations in one request, with `bulkId` references between them.
//!
//! Operations run in request order, except that one referring to a `bulkId` a later POST creates
//! waits until that POST has run; references that never resolve (missing or circular) fail with 409.
//! `failOnErrors` stops processing after that many errors; the rest are not attempted.
//!
//! Each operation that ends (done or failed, not the ones never attempted) is reported to the
//! caller as a [`Done`], with the app calls it made, for the audit trail.

use serde_json::{Map, Value, json};

use super::Provisioner;
use crate::backend::tally::{self, Tally};
use crate::mapping::ResourceKind;
use crate::scim::error::{ScimError, ScimType};
use crate::tenant::Tenant;

/// URN of a bulk request.
pub const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
/// URN of a bulk response.
pub const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";

/// Limits advertised in `ServiceProviderConfig` and enforced here.
#[derive(Debug, Clone, Copy)]
pub struct BulkLimits {
    pub max_operations: usize,
    pub max_payload_size: usize,
}

/// How one operation of a bulk request ended.
#[derive(Debug)]
pub struct Done<'a> {
    /// `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: &'a str,
    pub bulk_id: Option<&'a str>,
    /// The resource type its path names, if it names one.
    pub kind: Option<ResourceKind>,
    /// The SCIM id: the path's (`bulkId` references resolved), or the one a POST created.
    pub id: Option<String>,
    /// The operation's `data`, as the client sent it.
    pub data: Option<&'a Value>,
    /// Its status, or its error.
    pub result: Result<u16, &'a ScimError>,
    pub calls: Tally,
}

#[derive(Debug)]
struct Operation {
    method: String,
    bulk_id: Option<String>,
    path: String,
    data: Option<Value>,
    version: Option<String>,
}

fn parse(body: &Value, limits: BulkLimits) -> Result<(Vec<Operation>, Option<usize>), ScimError> {
    let obj = body.as_object().ok_or_else(|| ScimError::invalid_syntax("a bulk request must be a JSON object"))?;
    let schemas_ok = obj
        .get("schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|u| u.as_str().is_some_and(|u| u.eq_ignore_ascii_case(BULK_REQUEST))));
    if !schemas_ok {
        return Err(ScimError::invalid_syntax(format!("`schemas` must contain `{BULK_REQUEST}`")));
    }
    let fail_on_errors = match obj.get("failOnErrors") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|n| *n > 0)
                .ok_or_else(|| ScimError::invalid_value("`failOnErrors` must be a positive integer"))?
                as usize,
        ),
    };
    let ops = obj
        .get("Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::invalid_syntax("`Operations` must be an array"))?;
    if ops.len() > limits.max_operations {
        return Err(ScimError::status(
            413,
            format!("{} operations exceed the maximum of {}", ops.len(), limits.max_operations),
        ));
    }
    let mut out = Vec::with_capacity(ops.len());
    let mut seen_ids = std::collections::HashSet::new();
    for (i, op) in ops.iter().enumerate() {
        let field = |k: &str| op.get(k).and_then(Value::as_str).map(str::to_owned);
        let method = field("method")
            .ok_or_else(|| ScimError::invalid_syntax(format!("operation {i}: `method` is required")))?
            .to_ascii_uppercase();
        if !matches!(method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE") {
            return Err(ScimError::invalid_syntax(format!("operation {i}: unsupported method `{method}`")));
        }
        let bulk_id = field("bulkId");
        if method == "POST" && bulk_id.is_none() {
            return Err(ScimError::invalid_syntax(format!("operation {i}: a POST needs a `bulkId`")));
        }
        if let Some(b) = &bulk_id
            && !seen_ids.insert(b.clone())
        {
            return Err(ScimError::invalid_syntax(format!("operation {i}: `bulkId` `{b}` is used twice")));
        }
        let path =
            field("path").ok_or_else(|| ScimError::invalid_syntax(format!("operation {i}: `path` is required")))?;
        let data = op.get("data").cloned();
        if matches!(method.as_str(), "POST" | "PUT" | "PATCH") && data.is_none() {
            return Err(ScimError::invalid_syntax(format!("operation {i}: `data` is required for {method}")));
        }
        out.push(Operation { method, bulk_id, path, data, version: field("version") });
    }
    Ok((out, fail_on_errors))
}

/// All `bulkId:x` references in a value or path.
fn references(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            if let Some(id) = s.strip_prefix("bulkId:") {
                out.push(id.to_owned());
            }
        }
        Value::Array(a) => a.iter().for_each(|x| references(x, out)),
        Value::Object(o) => o.values().for_each(|x| references(x, out)),
        _ => {}
    }
}

fn substitute(v: &mut Value, resolved: &Map<String, Value>) {
    match v {
        Value::String(s) => {
            if let Some(id) = s.strip_prefix("bulkId:")
                && let Some(Value::String(real)) = resolved.get(id)
            {
                *s = real.clone();
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| substitute(x, resolved)),
        Value::Object(o) => o.values_mut().for_each(|x| substitute(x, resolved)),
        _ => {}
    }
}

fn path_refs(path: &str) -> Vec<String> {
    path.split('/').filter_map(|seg| seg.strip_prefix("bulkId:")).map(str::to_owned).collect()
}

fn substitute_path(path: &str, resolved: &Map<String, Value>) -> String {
    path.split('/')
        .map(|seg| match seg.strip_prefix("bulkId:").and_then(|id| resolved.get(id)).and_then(Value::as_str) {
            Some(real) => real.to_owned(),
            None => seg.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// `/Users` → (User, None); `/Users/abc` → (User, Some("abc")).
fn target(path: &str) -> Result<(ResourceKind, Option<String>), ScimError> {
    let trimmed = path.trim_start_matches('/');
    let (endpoint, id) = match trimmed.split_once('/') {
        Some((e, id)) if !id.is_empty() && !id.contains('/') => (e, Some(id.to_owned())),
        Some(_) => return Err(ScimError::invalid_path(format!("bad bulk path `{path}`"))),
        None => (trimmed, None),
    };
    let kind = ResourceKind::from_endpoint(endpoint)
        .ok_or_else(|| ScimError::invalid_path(format!("bulk path `{path}` names no resource endpoint")))?;
    Ok((kind, id))
}

fn error_result(op: &Operation, e: &ScimError) -> Value {
    let mut r = json!({
        "method": op.method,
        "status": e.status.to_string(),
        "response": e.to_json(),
    });
    if let Some(b) = &op.bulk_id {
        r["bulkId"] = Value::String(b.clone());
    }
    r
}

impl Provisioner {
    /// Runs a bulk request for `tenant`, reporting each operation that ends to `done`.
    pub async fn bulk(
        &self,
        tenant: &Tenant,
        body: &Value,
        limits: BulkLimits,
        done: &mut (dyn FnMut(Done<'_>) + Send),
    ) -> Result<Value, ScimError> {
        let (ops, fail_on_errors) = parse(body, limits)?;
        let posts: std::collections::HashSet<&str> =
            ops.iter().filter(|o| o.method == "POST").filter_map(|o| o.bulk_id.as_deref()).collect();
        let mut results: Vec<Option<Value>> = vec![None; ops.len()];
        let mut resolved: Map<String, Value> = Map::new();
        let mut failed_ids: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut errors = 0usize;
        let mut pending: Vec<usize> = (0..ops.len()).collect();
        'passes: loop {
            let mut progressed = false;
            let mut still = Vec::new();
            for &i in &pending {
                let op = &ops[i];
                let mut refs = path_refs(&op.path);
                if let Some(d) = &op.data {
                    references(d, &mut refs);
                }
                if let Some(bad) = refs.iter().find(|r| failed_ids.contains(*r) || !posts.contains(r.as_str())) {
                    let e = ScimError::new(409, ScimType::InvalidValue, format!("bulkId `{bad}` does not resolve"));
                    results[i] = Some(error_result(op, &e));
                    done(op.done(&op.path, None, Err(&e), Tally::default()));
                    fail(op, &mut failed_ids, &mut errors);
                    progressed = true;
                } else if refs.iter().any(|r| !resolved.contains_key(r)) {
                    still.push(i);
                    continue;
                } else {
                    let path = substitute_path(&op.path, &resolved);
                    let (outcome, calls) = tally::counted(self.run(tenant, op, &path, &resolved)).await;
                    match outcome {
                        Ok((result, status, new_id)) => {
                            done(op.done(&path, new_id.clone(), Ok(status), calls));
                            if let (Some(b), Some(id)) = (&op.bulk_id, new_id) {
                                resolved.insert(b.clone(), Value::String(id));
                            }
                            results[i] = Some(result);
                        }
                        Err(e) => {
                            done(op.done(&path, None, Err(&e), calls));
                            results[i] = Some(error_result(op, &e));
                            fail(op, &mut failed_ids, &mut errors);
                        }
                    }
                    progressed = true;
                }
                if fail_on_errors.is_some_and(|max| errors >= max) {
                    break 'passes;
                }
            }
            pending = still;
            if pending.is_empty() {
                break;
            }
            if !progressed {
                // Only references among waiting operations remain: a cycle.
                for &i in &pending {
                    let e = ScimError::new(409, ScimType::InvalidValue, "circular bulkId reference");
                    results[i] = Some(error_result(&ops[i], &e));
                    done(ops[i].done(&ops[i].path, None, Err(&e), Tally::default()));
                }
                break;
            }
        }
        Ok(json!({
            "schemas": [BULK_RESPONSE],
            "Operations": results.into_iter().flatten().collect::<Vec<_>>(),
        }))
    }

    /// Runs `op` on `path` (its path with `bulkId` references resolved).
    async fn run(
        &self,
        tenant: &Tenant,
        op: &Operation,
        path: &str,
        resolved: &Map<String, Value>,
    ) -> Result<(Value, u16, Option<String>), ScimError> {
        let (kind, id) = target(path)?;
        let ops = self.resource(tenant, kind)?;
        let mut data = op.data.clone().unwrap_or(Value::Null);
        substitute(&mut data, resolved);
        let mut result = json!({"method": op.method});
        if let Some(b) = &op.bulk_id {
            result["bulkId"] = Value::String(b.clone());
        }
        let need_id =
            || id.clone().ok_or_else(|| ScimError::invalid_path(format!("`{}` needs a resource id", op.method)));
        let (status, written, new_id) = match op.method.as_str() {
            "POST" => {
                if id.is_some() {
                    return Err(ScimError::invalid_path("POST goes to a resource endpoint, not a resource"));
                }
                let w = ops.create(&data).await?;
                let new_id = w.resource.get("id").and_then(Value::as_str).map(str::to_owned);
                (201, Some(w), new_id)
            }
            "PUT" => (200, Some(ops.replace(&need_id()?, &data, op.version.as_deref()).await?), None),
            "PATCH" => match ops.patch(&need_id()?, &data, op.version.as_deref()).await? {
                Some(w) => (200, Some(w), None),
                None => (204, None, None),
            },
            _ => {
                ops.delete(&need_id()?, op.version.as_deref()).await?;
                (204, None, None)
            }
        };
        result["status"] = Value::String(status.to_string());
        match written {
            Some(w) => {
                result["location"] = Value::String(w.location);
                result["version"] = Value::String(w.etag);
            }
            None => {
                if let Some(id) = &id {
                    result["location"] =
                        Value::String(format!("{}/{}/{id}", self.base_url(&tenant.id), kind.endpoint()));
                }
            }
        }
        Ok((result, status, new_id))
    }
}

impl Operation {
    /// The report of this operation on `path` (references resolved as far as they were).
    fn done<'a>(
        &'a self,
        path: &str,
        created: Option<String>,
        result: Result<u16, &'a ScimError>,
        calls: Tally,
    ) -> Done<'a> {
        let target = target(path).ok();
        Done {
            method: &self.method,
            bulk_id: self.bulk_id.as_deref(),
            kind: target.as_ref().map(|(k, _)| *k),
            id: created.or_else(|| target.and_then(|(_, id)| id)),
            data: self.data.as_ref(),
            result,
            calls,
        }
    }
}

fn fail(op: &Operation, failed: &mut std::collections::HashSet<String>, errors: &mut usize) {
    *errors += 1;
    if let Some(b) = &op.bulk_id {
        failed.insert(b.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_limits() {
        let limits = BulkLimits { max_operations: 2, max_payload_size: 1 << 20 };
        let ok = json!({"schemas": [BULK_REQUEST], "Operations": [
            {"method": "post", "bulkId": "a", "path": "/Users", "data": {"userName": "x"}}
        ]});
        let (ops, f) = parse(&ok, limits).unwrap();
        assert_eq!((ops[0].method.as_str(), f), ("POST", None));
        let too_many = json!({"schemas": [BULK_REQUEST], "Operations": [
            {"method": "DELETE", "path": "/Users/1"}, {"method": "DELETE", "path": "/Users/2"}, {"method": "DELETE", "path": "/Users/3"}
        ]});
        assert_eq!(parse(&too_many, limits).unwrap_err().status, 413);
        let no_bulk_id =
            json!({"schemas": [BULK_REQUEST], "Operations": [{"method": "POST", "path": "/Users", "data": {}}]});
        assert_eq!(parse(&no_bulk_id, limits).unwrap_err().status, 400);
    }

    #[test]
    fn references_are_found_and_replaced() {
        let mut v = json!({"members": [{"value": "bulkId:u1"}, {"value": "x"}]});
        let mut refs = Vec::new();
        references(&v, &mut refs);
        assert_eq!(refs, vec!["u1"]);
        let resolved: Map<String, Value> = [("u1".to_owned(), json!("abc"))].into_iter().collect();
        substitute(&mut v, &resolved);
        assert_eq!(v, json!({"members": [{"value": "abc"}, {"value": "x"}]}));
        assert_eq!(substitute_path("/Groups/bulkId:u1", &resolved), "/Groups/abc");
        assert_eq!(target("/Groups/abc").unwrap(), (ResourceKind::Group, Some("abc".into())));
        assert!(target("/Nope").is_err());
    }
}
