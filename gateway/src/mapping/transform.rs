//! SCIM JSON ↔ app JSON through a resource's attribute mappings. Pure: references between resources
//! (a manager's id) are resolved by the caller beforehand and passed in as lookup functions.

use serde_json::{Map, Value};

use super::compile::{AttrMap, MembersMapping, ResourceKind, ResourceMapping, ScimTarget};
use super::spec::Direction;
use super::template::Context;
use crate::scim::error::ScimError;
use crate::scim::schema::{AttrType, ResourceSchema};

/// Looks up the other side's id of a referenced resource (SCIM id → app id when writing, app id → SCIM
/// id when reading). App ids are carried as their JSON text (`1001`, `"a1b2"`) to keep their type.
pub type RefLookup<'a> = &'a dyn Fn(ResourceKind, &str) -> Option<String>;

/// Case-insensitive key lookup in a JSON object (SCIM attribute names are case-insensitive).
pub fn get_ci<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    let map = obj.as_object()?;
    map.get(key).or_else(|| map.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
}

fn present(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

/// Whether an entry of a multi-valued attribute carries all `select` pairs (strings compare
/// case-insensitively: `type` values are case-insensitive canonical values).
fn entry_matches(entry: &Value, select: &[(String, Value)]) -> bool {
    select.iter().all(|(k, want)| match (get_ci(entry, k), want) {
        (Some(Value::String(a)), Value::String(b)) => a.eq_ignore_ascii_case(b),
        (Some(a), b) => a == b,
        (None, _) => false,
    })
}

/// The container a target lives in: the resource or its extension object.
fn container<'a>(scim: &'a Value, t: &ScimTarget) -> Option<&'a Value> {
    match &t.urn {
        Some(urn) => get_ci(scim, urn),
        None => Some(scim),
    }
}

/// Reads the SCIM value a mapping line targets. For a selected entry of a multi-valued attribute
/// with no matching entry, an entry that has none of the selector's keys is used when it is the only
/// candidate (clients often send `emails: [{value, primary: true}]` without a `type`).
pub fn read_target<'a>(scim: &'a Value, t: &ScimTarget) -> Option<&'a Value> {
    let obj = container(scim, t)?;
    let top = present(get_ci(obj, &t.name))?;
    if !t.multi_valued {
        return match &t.sub {
            Some(s) => present(get_ci(top, s)),
            None => Some(top),
        };
    }
    let Some(sub) = &t.sub else { return Some(top) };
    let items = top.as_array()?;
    let entry = items.iter().find(|e| entry_matches(e, &t.select)).or_else(|| {
        let untyped: Vec<&Value> =
            items.iter().filter(|e| t.select.iter().all(|(k, _)| get_ci(e, k).is_none())).collect();
        match untyped.as_slice() {
            [only] => Some(*only),
            _ => None,
        }
    })?;
    present(get_ci(entry, sub))
}

/// Writes a value where a mapping line targets, creating the extension object or the selected entry.
fn write_target(scim: &mut Value, t: &ScimTarget, entry_extra: &Map<String, Value>, value: Value) {
    let Some(root) = scim.as_object_mut() else { return };
    let obj = match &t.urn {
        Some(urn) => root.entry(urn.clone()).or_insert_with(|| Value::Object(Map::new())),
        None => scim,
    };
    let Some(obj) = obj.as_object_mut() else { return };
    if !t.multi_valued {
        match &t.sub {
            Some(s) => {
                let parent = obj.entry(t.name.clone()).or_insert_with(|| Value::Object(Map::new()));
                if let Some(p) = parent.as_object_mut() {
                    p.insert(s.clone(), value);
                }
            }
            None => {
                obj.insert(t.name.clone(), value);
            }
        }
        return;
    }
    let Some(sub) = &t.sub else {
        obj.insert(t.name.clone(), value);
        return;
    };
    let arr = obj.entry(t.name.clone()).or_insert_with(|| Value::Array(Vec::new()));
    let Some(items) = arr.as_array_mut() else { return };
    let idx = match items.iter().position(|e| entry_matches(e, &t.select)) {
        Some(i) => i,
        None => {
            let mut e: Map<String, Value> = t.select.iter().cloned().collect();
            e.extend(entry_extra.iter().map(|(k, v)| (k.clone(), v.clone())));
            items.push(Value::Object(e));
            items.len() - 1
        }
    };
    if let Some(e) = items[idx].as_object_mut() {
        e.insert(sub.clone(), value);
    }
}

/// Coerces an app value to the SCIM attribute's type where the meaning is unambiguous
/// (`5` for a string attribute reads back as `"5"`).
fn coerce_to_scim(v: Value, ty: AttrType) -> Value {
    match (ty, v) {
        (AttrType::String | AttrType::Reference | AttrType::DateTime | AttrType::Binary, Value::Number(n)) => {
            Value::String(n.to_string())
        }
        (AttrType::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("true") => Value::Bool(true),
        (AttrType::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("false") => Value::Bool(false),
        (AttrType::Integer, Value::String(s)) => s.parse::<i64>().map(Value::from).unwrap_or(Value::String(s)),
        (_, v) => v,
    }
}

/// Equality of an app value with a table value, lenient about `1` vs `"1"`.
fn loosely_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.eq_ignore_ascii_case(y),
        (Value::String(s), Value::Number(n)) | (Value::Number(n), Value::String(s)) => *s == n.to_string(),
        _ => a == b,
    }
}

/// The values the gateway keeps for a SCIM resource (its `stored` lines), as the store records them.
pub fn stored_values(rm: &ResourceMapping, scim: &Value) -> Map<String, Value> {
    let mut out = Value::Object(Map::new());
    for a in rm.attributes.iter().filter(|a| a.stored) {
        if let Some(v) = a.target.as_ref().and_then(|t| read_target(scim, t)) {
            a.app.set(&mut out, v.clone());
        }
    }
    match out {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The app ids this app object references, so the caller can resolve them before `to_scim`.
pub fn app_references(rm: &ResourceMapping, app: &Value) -> Vec<(ResourceKind, String)> {
    rm.attributes
        .iter()
        .filter(|a| a.direction != Direction::ToApp)
        .filter(|a| !a.stored)
        .filter_map(|a| Some((a.reference?, present(a.app.get(app))?)))
        .map(|(k, v)| (k, v.to_string()))
        .collect()
}

/// The SCIM ids this SCIM resource references, so the caller can resolve them before `to_app`.
pub fn scim_references(rm: &ResourceMapping, scim: &Value) -> Vec<(ResourceKind, String)> {
    rm.attributes
        .iter()
        .filter(|a| a.direction != Direction::ToScim)
        .filter_map(|a| {
            let v = read_target(scim, a.target.as_ref()?)?;
            Some((a.reference?, v.as_str()?.to_owned()))
        })
        .collect()
}

/// Maps an app object (and the values the gateway keeps for it, `stored`) to the SCIM attributes
/// they hold (without `id`, `meta`: the caller adds those). `base_url` is the tenant's SCIM base
/// URL, for the `$ref` of references.
pub fn to_scim(rm: &ResourceMapping, app: &Value, stored: &Value, refs: RefLookup<'_>, base_url: &str) -> Value {
    let mut scim = Value::Object(Map::new());
    for a in rm.attributes.iter().filter(|a| a.direction != Direction::ToApp) {
        let source = if a.stored { stored } else { app };
        let Some(t) = &a.target else { continue };
        // Several lines may read one attribute (a full value in one field, a fallback in another):
        // the first that has a value wins.
        if read_target(&scim, t).is_some() {
            continue;
        }
        let Some(raw) = present(a.app.get(source)) else { continue };
        let Some(value) = app_value_to_scim(a, t, raw, app, refs) else { continue };
        if value.is_null() || value.as_str().is_some_and(str::is_empty) {
            continue;
        }
        let reference_url = match (a.reference, &value) {
            (Some(kind), Value::String(id)) if has_ref_sibling(rm, t) => {
                Some(format!("{base_url}/{}/{id}", kind.endpoint()))
            }
            _ => None,
        };
        write_target(&mut scim, t, &a.entry, value);
        if let Some(url) = reference_url {
            let ref_target = ScimTarget { sub: Some("$ref".into()), ..t.clone() };
            write_target(&mut scim, &ref_target, &a.entry, Value::String(url));
        }
    }
    let mut schemas = vec![Value::String(rm.schema.core.id.clone())];
    if let Some(obj) = scim.as_object() {
        for ext in &rm.schema.extensions {
            if obj.contains_key(&ext.id) {
                schemas.push(Value::String(ext.id.clone()));
            }
        }
    }
    if let Some(obj) = scim.as_object_mut() {
        obj.insert("schemas".into(), Value::Array(schemas));
    }
    scim
}

/// Whether a reference line targets `x.value` of a complex attribute that also has `x.$ref`.
fn has_ref_sibling(rm: &ResourceMapping, t: &ScimTarget) -> bool {
    t.sub.as_deref() == Some("value") && rm.schema.find(t.urn.as_deref(), &t.name, Some("$ref")).is_some()
}

fn app_value_to_scim(a: &AttrMap, t: &ScimTarget, raw: &Value, app: &Value, refs: RefLookup<'_>) -> Option<Value> {
    if let Some(e) = &a.to_scim {
        return e.eval(&Context::new([("value", raw), ("app", app)])).ok();
    }
    if !a.values.is_empty() {
        return a.values.iter().find(|(_, app_v)| loosely_equal(app_v, raw)).map(|(scim_v, _)| scim_v.clone());
    }
    if let Some(kind) = a.reference {
        return refs(kind, &raw.to_string()).map(Value::String);
    }
    Some(coerce_to_scim(raw.clone(), t.attribute.ty))
}

/// Maps a SCIM resource to the app object the mapping builds from it. Fails on values the app
/// cannot represent, before anything is sent. On an `update`, attributes the resource does not have
/// are written as their line's `clear` value, or as `null` when the resource has `clear_with_null`
/// (apps whose update merges); with `partial`, missing required attributes
/// are left out rather than refused (to show the part of an update a PATCH determines).
pub fn to_app(
    rm: &ResourceMapping,
    scim: &Value,
    refs: RefLookup<'_>,
    credentials: &Value,
    update: bool,
    partial: bool,
) -> Result<Value, ScimError> {
    let mut app = Value::Object(Map::new());
    for a in rm.attributes.iter().filter(|a| a.direction != Direction::ToScim && !a.stored) {
        if let Some(c) = &a.constant {
            a.app.set(&mut app, c.clone());
            continue;
        }
        let Some(t) = &a.target else { continue };
        let Some(v) = read_target(scim, t) else {
            if a.required && !partial {
                return Err(ScimError::invalid_value(format!("`{}` is required", display_target(t))));
            }
            if update && a.to_app.is_none() {
                match (&a.clear, rm.clear_with_null) {
                    (Some(v), _) => a.app.set(&mut app, v.clone()),
                    (None, true) => a.app.set(&mut app, Value::Null),
                    (None, false) => {}
                }
            }
            continue;
        };
        let out = scim_value_to_app(a, t, v, scim, refs, credentials)?;
        a.app.set(&mut app, out);
    }
    Ok(app)
}

fn scim_value_to_app(
    a: &AttrMap,
    t: &ScimTarget,
    v: &Value,
    scim: &Value,
    refs: RefLookup<'_>,
    credentials: &Value,
) -> Result<Value, ScimError> {
    if let Some(e) = &a.to_app {
        return e.eval(&Context::new([("value", v), ("scim", scim), ("credentials", credentials)])).map_err(|e| {
            ScimError::invalid_value(format!(
                "`{}` could not be converted for the app: {}",
                display_target(t),
                e.message
            ))
        });
    }
    if !a.values.is_empty() {
        return a
            .values
            .iter()
            .find(|(scim_v, _)| loosely_equal(scim_v, v))
            .map(|(_, app_v)| app_v.clone())
            .ok_or_else(|| {
                ScimError::invalid_value(format!("`{}` value {v} is not one the app supports", display_target(t)))
            });
    }
    if let Some(kind) = a.reference {
        let id = v.as_str().ok_or_else(|| {
            ScimError::invalid_value(format!("`{}` must be the id of a {}", display_target(t), kind.name()))
        })?;
        let app_id = refs(kind, id).ok_or_else(|| {
            ScimError::invalid_value(format!("`{}`: no {} with id `{id}`", display_target(t), kind.name()))
        })?;
        return serde_json::from_str(&app_id).map_err(|_| ScimError::status(500, "stored app id is not valid JSON"));
    }
    Ok(v.clone())
}

/// A target as a SCIM path, for messages.
pub fn display_target(t: &ScimTarget) -> String {
    let mut s = String::new();
    if let Some(u) = &t.urn {
        s.push_str(u);
        s.push(':');
    }
    s.push_str(&t.name);
    if !t.select.is_empty() {
        let conds: Vec<String> = t.select.iter().map(|(k, v)| format!("{k} eq {v}")).collect();
        s.push_str(&format!("[{}]", conds.join(" and ")));
    }
    if let Some(sub) = &t.sub {
        s.push('.');
        s.push_str(sub);
    }
    s
}

/// `(schema URN, attribute, sub-attribute)`.
type SubAttr = (Option<String>, String, String);
/// `(schema URN, attribute, optional sub-attribute)`.
type SubKey = (Option<String>, String, Option<String>);

/// The SCIM schema a tenant publishes for this resource: exactly what the mapping can hold, so a
/// client (and a conformance suite) never writes an attribute that would not read back.
///
/// Entry selectors become canonical values (`emails[type eq "work"]` publishes `emails.type` with
/// canonical value `work`); read-only lines publish read-only attributes; an app without an update
/// call publishes its attributes as immutable.
pub fn published_schema(
    full: &ResourceSchema,
    attributes: &[AttrMap],
    members: Option<&MembersMapping>,
    updatable: bool,
) -> ResourceSchema {
    use crate::scim::schema::{Keep, Mutability, Selection, restrict};
    let mut keep: Vec<Keep> = Vec::new();
    // Canonical values per (urn, attribute, sub-attribute), gathered from every selector.
    let mut canonical: std::collections::BTreeMap<SubAttr, Vec<String>> = std::collections::BTreeMap::new();
    // Several lines may map one attribute (a full value and a fallback, a write to a second field):
    // what clients may do with it follows all of them together, not whichever line comes last.
    let mut ways: std::collections::BTreeMap<SubKey, (bool, bool)> = std::collections::BTreeMap::new();
    for a in attributes {
        if let Some(t) = &a.target {
            let w = ways.entry((t.urn.clone(), t.name.clone(), t.sub.clone())).or_default();
            w.0 |= a.direction != Direction::ToApp;
            w.1 |= a.direction != Direction::ToScim;
        }
    }
    for a in attributes {
        let Some(t) = &a.target else { continue };
        let (readable, writable) =
            ways.get(&(t.urn.clone(), t.name.clone(), t.sub.clone())).copied().unwrap_or_default();
        let mut k = Keep { urn: t.urn.clone(), name: t.name.clone(), sub: t.sub.clone(), ..Keep::default() };
        if a.required {
            k.overrides.required = Some(true);
            // A required sub-attribute makes its attribute required too (`name` for `name.givenName`).
            if t.sub.is_some() {
                keep.push(Keep { urn: t.urn.clone(), name: t.name.clone(), ..Keep::default() }.required(true));
            }
        }
        k.overrides.case_exact = a.case_exact;
        match (readable, writable) {
            (true, false) => k.overrides.mutability = Some(Mutability::ReadOnly),
            // Written, never read back (a password): clients must not expect it in answers.
            (false, true) => {
                k.overrides.mutability = Some(Mutability::WriteOnly);
                k.overrides.returned = Some(crate::scim::schema::Returned::Never);
            }
            _ if !updatable => k.overrides.mutability = Some(Mutability::Immutable),
            _ => {}
        }
        if a.reference.is_some()
            && t.sub.as_deref() == Some("value")
            && full.find(t.urn.as_deref(), &t.name, Some("$ref")).is_some()
        {
            keep.push(Keep { urn: t.urn.clone(), name: t.name.clone(), sub: Some("$ref".into()), ..Keep::default() });
        }
        keep.push(k);
        for (sub, v) in t.select.iter().map(|(k, v)| (k, v)).chain(a.entry.iter()) {
            let values = canonical.entry((t.urn.clone(), t.name.clone(), sub.clone())).or_default();
            if let Some(text) = v.as_str()
                && !values.iter().any(|x| x == text)
            {
                values.push(text.to_owned());
            }
        }
    }
    for ((urn, name, sub), values) in canonical {
        let mut k = Keep { urn, name, sub: Some(sub), ..Keep::default() };
        if !values.is_empty() {
            k.overrides.canonical_values = Some(values);
        }
        keep.push(k);
    }
    if let Some(m) = members {
        for sub in ["value", "$ref", "type"] {
            let mut k = Keep::sub("members", sub);
            if sub == "type" {
                k = k.canonical(&[m.member_kind.name()]);
            }
            keep.push(k);
        }
    }
    restrict(full, &Selection::new(keep))
}
