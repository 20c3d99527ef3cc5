//! A tenant's part of an app instance it shares with other tenants: the app field that marks its
//! objects (`/org: acme`), and optionally the query parameters that make the app's own list
//! return only those. The gateway writes the mark on every create and update, and treats every
//! object without it as absent: not readable, not listed, not found by a filter, not changeable
//! and not deletable, whatever id a client tries.

use std::collections::BTreeMap;

use serde_json::Value;

use super::spec::ScopeSpec;
use crate::mapping::pointer::Pointer;
use crate::mapping::{Mapping, ResourceKind};

/// The scope of one resource type of one tenant.
#[derive(Debug)]
pub struct Scope {
    pub field: Pointer,
    pub value: Value,
    /// Added to every list and search call, so the app filters itself.
    pub query: Vec<(String, String)>,
}

impl Scope {
    /// Whether `app` (an object as the app answered it) belongs to this tenant.
    pub fn contains(&self, app: &Value) -> bool {
        match (self.field.get(app), &self.value) {
            (Some(a), b) if a == b => true,
            // Apps differ in whether `7` is a number or a string; the mark is the same.
            (Some(Value::Number(n)), Value::String(s)) | (Some(Value::String(s)), Value::Number(n)) => {
                n.to_string() == *s
            }
            _ => false,
        }
    }

    /// Puts the tenant's mark on an app object about to be written.
    pub fn mark(&self, app: &mut Value) {
        self.field.set(app, self.value.clone());
    }
}

/// Compiles `scope:` against the tenant's mapping; problems are `(location, message)`.
pub fn compile(
    specs: &BTreeMap<String, ScopeSpec>,
    mapping: &Mapping,
) -> Result<BTreeMap<ResourceKind, Scope>, Vec<(String, String)>> {
    let mut out = BTreeMap::new();
    let mut problems = Vec::new();
    for (name, spec) in specs {
        let at = format!("scope.{name}");
        let Some(kind) = ResourceKind::from_name(name) else {
            problems.push((at, format!("`{name}` is not a resource type; use User or Group")));
            continue;
        };
        let Some(rm) = mapping.resource(kind) else {
            problems.push((at, format!("mapping `{}` has no {name} resource", mapping.name)));
            continue;
        };
        let field = match Pointer::parse(&spec.field) {
            Ok(p) if !p.is_root() => p,
            _ => {
                problems.push((format!("{at}.field"), format!("`{}` is not a JSON pointer to a field", spec.field)));
                continue;
            }
        };
        if let Some(a) = rm.attributes.iter().find(|a| a.app.as_str() == field.as_str() && a.target.is_some()) {
            let scim = a.target.as_ref().map(crate::mapping::transform::display_target).unwrap_or_default();
            problems.push((
                format!("{at}.field"),
                format!("`{field}` is mapped from SCIM `{scim}`; a scope needs a field the mapping leaves alone"),
            ));
            continue;
        }
        if !matches!(spec.value, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
            problems.push((format!("{at}.value"), "the scope value must be a string, number or boolean".into()));
            continue;
        }
        let query = spec.query.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        out.insert(kind, Scope { field, value: spec.value.clone(), query });
    }
    if problems.is_empty() { Ok(out) } else { Err(problems) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn marks_and_recognises_its_objects() {
        let s = Scope { field: Pointer::parse("/org").unwrap(), value: json!("acme"), query: vec![] };
        let mut obj = json!({"login": "a"});
        assert!(!s.contains(&obj));
        s.mark(&mut obj);
        assert!(s.contains(&obj));
        assert!(!s.contains(&json!({"org": "globex"})));
        let n = Scope { field: Pointer::parse("/project/id").unwrap(), value: json!("7"), query: vec![] };
        assert!(n.contains(&json!({"project": {"id": 7}})));
        assert!(!n.contains(&json!({"project": {"id": 8}})));
    }
}
