//! Listing and querying resources (RFC 7644 §3.4.2, §3.4.3): the query parameters of a GET or
//! the body of a POST `/.search`, attribute projection (§3.4.2.5 with RFC 7643 §7 `returned`),
//! sorting (§3.4.2.3) and the `ListResponse` envelope (§3.4.2).

use std::cmp::Ordering;
use std::ops::Range;

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::ScimError;
use super::filter::{Filter, parse_attr_path, parse_filter};
use super::path::AttrPath;
use super::schema::{AttrType, Attribute, ResourceSchema, Returned};

/// URN of a `/.search` request body (RFC 7644 §3.4.3).
pub const SEARCH_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
/// URN of a list response (RFC 7644 §3.4.2).
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// `sortOrder` (RFC 7644 §3.4.2.3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SortOrder {
    #[default]
    Ascending,
    Descending,
}

/// The parameters of a list or search request, validated and normalized.
///
/// Both `attributes` and `excludedAttributes` may be given: RFC 7644 never says what that
/// means, so rather than reject it, `project` applies `attributes` first and then removes the
/// excluded ones.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    pub filter: Option<Filter>,
    /// 1-based; values below 1 become 1 (RFC 7644 §3.4.2.4).
    pub start_index: usize,
    /// `None` when the client did not ask; negative values become 0, and values above the
    /// caller's maximum become that maximum (RFC 7644 §3.4.2.4).
    pub count: Option<usize>,
    pub sort_by: Option<AttrPath>,
    pub sort_order: SortOrder,
    pub attributes: Vec<AttrPath>,
    pub excluded_attributes: Vec<AttrPath>,
}

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            filter: None,
            start_index: 1,
            count: None,
            sort_by: None,
            sort_order: SortOrder::Ascending,
            attributes: Vec::new(),
            excluded_attributes: Vec::new(),
        }
    }
}

/// The parameters RFC 7644 §3.4.2 and §3.4.3 define; others are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Param {
    Filter,
    StartIndex,
    Count,
    SortBy,
    SortOrder,
    Attributes,
    ExcludedAttributes,
}

impl Param {
    const ALL: [Param; 7] = [
        Param::Filter,
        Param::StartIndex,
        Param::Count,
        Param::SortBy,
        Param::SortOrder,
        Param::Attributes,
        Param::ExcludedAttributes,
    ];

    fn name(self) -> &'static str {
        match self {
            Param::Filter => "filter",
            Param::StartIndex => "startIndex",
            Param::Count => "count",
            Param::SortBy => "sortBy",
            Param::SortOrder => "sortOrder",
            Param::Attributes => "attributes",
            Param::ExcludedAttributes => "excludedAttributes",
        }
    }

    /// Whether the parameter is a list, which may be split over repetitions.
    fn is_list(self) -> bool {
        matches!(self, Param::Attributes | Param::ExcludedAttributes)
    }

    /// The parameter called `name`, compared case-insensitively (RFC 7644 §3.4.2 names are
    /// case-insensitive like attribute names).
    fn named(name: &str) -> Option<Param> {
        Param::ALL.into_iter().find(|p| p.name().eq_ignore_ascii_case(name))
    }
}

impl ListQuery {
    /// Parses the query string of a GET on a resource endpoint. `max_count` caps `count`.
    ///
    /// Unknown parameters are ignored. `attributes` and `excludedAttributes` may repeat (their
    /// lists add up); any other parameter given twice is rejected, since picking one would
    /// silently ignore what the client asked. An empty `filter=` means no filter.
    pub fn from_query(pairs: &[(String, String)], max_count: usize) -> Result<Self, ScimError> {
        let mut query = Self::default();
        let mut seen = Vec::new();
        for (name, value) in pairs {
            let Some(param) = Param::named(name) else { continue };
            check_once(&mut seen, param)?;
            query.set_text(param, value, max_count)?;
        }
        Ok(query)
    }

    /// Parses a POST `/.search` body (RFC 7644 §3.4.3). `max_count` caps `count`.
    ///
    /// `attributes` and `excludedAttributes` are JSON arrays of paths; a single comma-separated
    /// string is accepted too, as in the query string. `null` members count as absent.
    pub fn from_search(body: &Value, max_count: usize) -> Result<Self, ScimError> {
        let obj = body.as_object().ok_or_else(|| ScimError::invalid_syntax("search request must be a JSON object"))?;
        check_search_schema(obj)?;
        let mut query = Self::default();
        let mut seen = Vec::new();
        for (name, value) in obj {
            let Some(param) = Param::named(name) else { continue };
            check_once(&mut seen, param)?;
            if !value.is_null() {
                query.set_json(param, value, max_count)?;
            }
        }
        Ok(query)
    }

    /// The indices of the full, filtered and sorted result set this page covers;
    /// `default_count` applies when the client gave no `count`.
    pub fn page(&self, total: usize, default_count: usize) -> Range<usize> {
        let start = self.start_index.saturating_sub(1).min(total);
        let count = self.count.unwrap_or(default_count);
        start..start.saturating_add(count).min(total)
    }

    fn set_text(&mut self, param: Param, text: &str, max_count: usize) -> Result<(), ScimError> {
        match param {
            Param::Filter => self.filter = filter(text)?,
            Param::StartIndex => self.start_index = start_index(integer_text(param, text)?),
            Param::Count => self.count = Some(count(integer_text(param, text)?, max_count)),
            Param::SortBy => self.sort_by = Some(path(param, text)?),
            Param::SortOrder => self.sort_order = sort_order(text)?,
            Param::Attributes => self.attributes.extend(path_list(param, text)?),
            Param::ExcludedAttributes => self.excluded_attributes.extend(path_list(param, text)?),
        }
        Ok(())
    }

    fn set_json(&mut self, param: Param, value: &Value, max_count: usize) -> Result<(), ScimError> {
        match (param, value) {
            (Param::StartIndex, _) => self.start_index = start_index(integer_json(param, value)?),
            (Param::Count, _) => self.count = Some(count(integer_json(param, value)?, max_count)),
            (Param::Attributes | Param::ExcludedAttributes, Value::Array(items)) => {
                for item in items {
                    self.set_text(param, string_json(param, item)?, max_count)?;
                }
            }
            _ => self.set_text(param, string_json(param, value)?, max_count)?,
        }
        Ok(())
    }
}

fn check_once(seen: &mut Vec<Param>, param: Param) -> Result<(), ScimError> {
    if seen.contains(&param) && !param.is_list() {
        return Err(ScimError::invalid_value(format!("'{}' is given more than once", param.name())));
    }
    seen.push(param);
    Ok(())
}

/// RFC 7644 §3.4.3: a search body declares the `SearchRequest` message schema.
fn check_search_schema(obj: &Map<String, Value>) -> Result<(), ScimError> {
    let declared =
        obj.iter().find(|(k, _)| k.eq_ignore_ascii_case("schemas")).and_then(|(_, v)| v.as_array()).is_some_and(
            |schemas| schemas.iter().any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(SEARCH_REQUEST))),
        );
    if declared {
        Ok(())
    } else {
        Err(ScimError::invalid_syntax(format!("search request 'schemas' must contain {SEARCH_REQUEST}")))
    }
}

fn filter(text: &str) -> Result<Option<Filter>, ScimError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    parse_filter(text).map(Some).map_err(|e| ScimError::invalid_filter(format!("filter: {e}")))
}

fn path(param: Param, text: &str) -> Result<AttrPath, ScimError> {
    parse_attr_path(text.trim()).map_err(|e| {
        ScimError::invalid_value(format!("{}: '{}' is not an attribute path: {e}", param.name(), brief(text)))
    })
}

/// A comma-separated list of attribute paths; empty items are skipped.
fn path_list(param: Param, text: &str) -> Result<Vec<AttrPath>, ScimError> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| path(param, s)).collect()
}

fn sort_order(text: &str) -> Result<SortOrder, ScimError> {
    match text.trim() {
        t if t.eq_ignore_ascii_case("ascending") => Ok(SortOrder::Ascending),
        t if t.eq_ignore_ascii_case("descending") => Ok(SortOrder::Descending),
        t => {
            Err(ScimError::invalid_value(format!("sortOrder: '{}' is neither 'ascending' nor 'descending'", brief(t))))
        }
    }
}

fn start_index(n: i64) -> usize {
    usize::try_from(n.max(1)).unwrap_or(usize::MAX)
}

fn count(n: i64, max_count: usize) -> usize {
    usize::try_from(n.max(0)).unwrap_or(usize::MAX).min(max_count)
}

/// A decimal integer; out-of-range values saturate, since only their sign and size matter here.
fn integer_text(param: Param, text: &str) -> Result<i64, ScimError> {
    let t = text.trim();
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ScimError::invalid_value(format!("{}: '{}' is not an integer", param.name(), brief(t))));
    }
    Ok(t.parse().unwrap_or(if t.starts_with('-') { i64::MIN } else { i64::MAX }))
}

fn integer_json(param: Param, value: &Value) -> Result<i64, ScimError> {
    match value {
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(n.as_i64().unwrap_or(i64::MAX)),
        _ => {
            Err(ScimError::invalid_value(format!("{}: {} is not an integer", param.name(), brief(&value.to_string()))))
        }
    }
}

fn string_json(param: Param, value: &Value) -> Result<&str, ScimError> {
    let err = || ScimError::invalid_value(format!("{}: {} is not a string", param.name(), brief(&value.to_string())));
    value.as_str().ok_or_else(err)
}

/// `text` trimmed and cut to a length fit for an error detail: clients may send megabytes.
fn brief(text: &str) -> String {
    const MAX_CHARS: usize = 64;
    let text = text.trim();
    match text.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// The RFC 7644 §3.4.2 `ListResponse` envelope. `Resources` is present even when empty, which
/// some clients (and §3.4.2's examples) rely on.
pub fn list_response(resources: Vec<Value>, total_results: usize, start_index: usize) -> Value {
    let mut body = json!({
        "schemas": [LIST_RESPONSE],
        "totalResults": total_results,
        "startIndex": start_index,
        "itemsPerPage": resources.len(),
    });
    body["Resources"] = Value::Array(resources);
    body
}

// ---------------------------------------------------------------------------------------------
// Resolving attribute paths against a resource schema.

/// Which schema's attributes a path addresses. Core attributes and the common ones (`id`,
/// `externalId`, `meta`) sit at the top level of a resource; extension attributes inside the
/// object keyed by the extension's URN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Core,
    Extension(usize),
}

/// What an `AttrPath` designates in a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target<'p> {
    /// A whole schema, named by its URN alone.
    Schema(Scope),
    Attr {
        scope: Scope,
        name: &'p str,
        sub: Option<&'p str>,
    },
}

fn scope_of(schema: &ResourceSchema, urn: &str) -> Option<Scope> {
    if schema.core.id.eq_ignore_ascii_case(urn) {
        return Some(Scope::Core);
    }
    schema.extensions.iter().position(|s| s.id.eq_ignore_ascii_case(urn)).map(Scope::Extension)
}

/// Resolves `path`, or `None` when it names an unknown schema. A whole URN may arrive split
/// (`urn:…:2.0` + `User`) or unsplit in `name`, depending on how the parser read it.
fn resolve<'p>(schema: &ResourceSchema, path: &'p AttrPath) -> Option<Target<'p>> {
    let sub = path.sub.as_deref();
    match path.urn.as_deref() {
        Some(urn) => match scope_of(schema, urn) {
            Some(scope) => Some(Target::Attr { scope, name: &path.name, sub }),
            None if sub.is_none() => scope_of(schema, &format!("{urn}:{}", path.name)).map(Target::Schema),
            None => None,
        },
        None => match scope_of(schema, &path.name) {
            Some(scope) if sub.is_none() => Some(Target::Schema(scope)),
            _ => Some(Target::Attr { scope: Scope::Core, name: &path.name, sub }),
        },
    }
}

/// The definition of the top-level attribute `name` in `scope`.
fn definition<'s>(schema: &'s ResourceSchema, scope: Scope, name: &str) -> Option<&'s Attribute> {
    match scope {
        Scope::Core => schema.find(None, name, None),
        Scope::Extension(i) => schema.extensions.get(i).and_then(|s| s.attribute(name)),
    }
}

// ---------------------------------------------------------------------------------------------
// Projection.

/// A resolved `attributes` or `excludedAttributes` list.
struct Paths<'p> {
    targets: Vec<Target<'p>>,
}

/// How a list mentions one attribute.
#[derive(Default)]
struct Mention<'p> {
    whole: bool,
    subs: Vec<&'p str>,
}

impl<'p> Paths<'p> {
    fn new(schema: &ResourceSchema, paths: &'p [AttrPath]) -> Self {
        Self { targets: paths.iter().filter_map(|p| resolve(schema, p)).collect() }
    }

    fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    fn names_schema(&self, scope: Scope) -> bool {
        self.targets.contains(&Target::Schema(scope))
    }

    fn mention(&self, scope: Scope, attr: &str) -> Mention<'p> {
        let mut m = Mention::default();
        for t in &self.targets {
            if let Target::Attr { scope: s, name, sub } = *t
                && s == scope
                && name.eq_ignore_ascii_case(attr)
            {
                match sub {
                    Some(sub) => m.subs.push(sub),
                    None => m.whole = true,
                }
            }
        }
        m
    }
}

/// Which sub-attributes of a kept attribute survive.
enum Subs<'p> {
    /// All of them, except `request` ones unless `explicit` (the attribute itself was named).
    All { explicit: bool },
    /// Only these, plus `always` ones.
    Named(Vec<&'p str>),
}

/// The attribute-level outcome of the `returned` rules and the two lists.
struct Decision<'p> {
    subs: Subs<'p>,
    excluded_subs: Vec<&'p str>,
}

/// `resource` as RFC 7644 §3.4.2.5 and RFC 7643 §7 `returned` say a response shows it:
///
/// - `schemas` and `returned: always` attributes (such as `id`) are always kept, `never`
///   attributes (such as `password`) never;
/// - without `attributes`, `default` attributes are kept and `request` ones dropped; with it,
///   only what it names (a whole attribute, some sub-attributes, or a whole schema by URN,
///   which brings that schema's `default` attributes);
/// - `excluded` then removes what it names, except `always` attributes.
///
/// Names match case-insensitively and paths naming unknown attributes are ignored. Complex
/// values, multi-valued elements and extension objects left empty are dropped (RFC 7643 §2.5).
///
/// It takes the resource by value: what is kept moves into the answer rather than being copied.
pub fn project(resource: Value, schema: &ResourceSchema, attributes: &[AttrPath], excluded: &[AttrPath]) -> Value {
    let Value::Object(obj) = resource else { return resource };
    let projector =
        Projector { schema, include: Paths::new(schema, attributes), exclude: Paths::new(schema, excluded) };
    let mut out = Map::new();
    for (key, value) in obj {
        if let Some(kept) = projector.top_level(&key, value) {
            out.insert(key, kept);
        }
    }
    Value::Object(out)
}

struct Projector<'a> {
    schema: &'a ResourceSchema,
    include: Paths<'a>,
    exclude: Paths<'a>,
}

impl<'a> Projector<'a> {
    fn top_level(&self, key: &str, value: Value) -> Option<Value> {
        if key.eq_ignore_ascii_case("schemas") {
            return Some(value);
        }
        match (scope_of(self.schema, key), value) {
            (Some(scope @ Scope::Extension(_)), Value::Object(members)) => self.extension(scope, members),
            (_, value) => self.attribute(Scope::Core, key, value),
        }
    }

    fn extension(&self, scope: Scope, members: Map<String, Value>) -> Option<Value> {
        let kept: Map<String, Value> =
            members.into_iter().filter_map(|(k, v)| self.attribute(scope, &k, v).map(|v| (k, v))).collect();
        (!kept.is_empty()).then_some(Value::Object(kept))
    }

    fn attribute(&self, scope: Scope, name: &str, value: Value) -> Option<Value> {
        let def = definition(self.schema, scope, name);
        let decision = self.decide(scope, name, def.map_or(Returned::Default, |d| d.returned))?;
        select_subs(value, def, &decision)
    }

    /// Applies the `returned` rules and both lists to one attribute; `None` drops it.
    fn decide(&self, scope: Scope, name: &str, returned: Returned) -> Option<Decision<'a>> {
        let included = self.include.mention(scope, name);
        let excluded = self.exclude.mention(scope, name);
        let subs = match returned {
            Returned::Never => return None,
            Returned::Always => Subs::All { explicit: included.whole },
            Returned::Default | Returned::Request => {
                if excluded.whole || self.exclude.names_schema(scope) {
                    return None;
                }
                self.included(scope, returned, included)?
            }
        };
        Some(Decision { subs, excluded_subs: excluded.subs })
    }

    /// What the `attributes` list keeps of a `default` or `request` attribute it mentions as `m`.
    fn included(&self, scope: Scope, returned: Returned, m: Mention<'a>) -> Option<Subs<'a>> {
        let default = returned == Returned::Default;
        if self.include.is_empty() {
            default.then_some(Subs::All { explicit: false })
        } else if m.whole {
            Some(Subs::All { explicit: true })
        } else if !m.subs.is_empty() {
            Some(Subs::Named(m.subs))
        } else {
            (default && self.include.names_schema(scope)).then_some(Subs::All { explicit: false })
        }
    }
}

/// Keeps the sub-attributes `decision` allows, in every element of a multi-valued attribute.
fn select_subs(value: Value, def: Option<&Attribute>, decision: &Decision) -> Option<Value> {
    match value {
        Value::Object(obj) => select_in_object(obj, def, decision),
        Value::Array(items) => {
            let kept: Vec<Value> = items.into_iter().filter_map(|i| select_subs(i, def, decision)).collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        // A simple value has no sub-attributes, so naming some selects nothing.
        _ => matches!(decision.subs, Subs::All { .. }).then_some(value),
    }
}

fn select_in_object(mut obj: Map<String, Value>, def: Option<&Attribute>, decision: &Decision) -> Option<Value> {
    obj.retain(|k, _| keeps_sub(k, def.and_then(|d| d.sub(k)).map_or(Returned::Default, |s| s.returned), decision));
    let kept = obj;
    (!kept.is_empty()).then_some(Value::Object(kept))
}

fn keeps_sub(name: &str, returned: Returned, decision: &Decision) -> bool {
    let named = |list: &[&str]| list.iter().any(|s| s.eq_ignore_ascii_case(name));
    match returned {
        Returned::Never => false,
        Returned::Always => true,
        Returned::Default | Returned::Request => {
            let included = match &decision.subs {
                Subs::All { explicit } => *explicit || returned == Returned::Default,
                Subs::Named(list) => named(list),
            };
            included && !named(&decision.excluded_subs)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sorting.

/// A comparable sort value. Values of different JSON types order by type, which only matters
/// for data that violates its schema.
#[derive(Debug, Clone, PartialEq)]
enum SortKey {
    Bool(bool),
    Number(f64),
    /// A `dateTime` value, compared as an instant whatever its offset.
    Instant(OffsetDateTime),
    /// Lower-cased unless the attribute is case-exact.
    Text(String),
}

impl SortKey {
    fn rank(&self) -> u8 {
        match self {
            SortKey::Bool(_) => 0,
            SortKey::Number(_) => 1,
            SortKey::Instant(_) => 2,
            SortKey::Text(_) => 3,
        }
    }

    fn compare(&self, other: &Self) -> Ordering {
        match (self, other) {
            (SortKey::Bool(a), SortKey::Bool(b)) => a.cmp(b),
            (SortKey::Number(a), SortKey::Number(b)) => a.total_cmp(b),
            (SortKey::Instant(a), SortKey::Instant(b)) => a.cmp(b),
            (SortKey::Text(a), SortKey::Text(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

/// Sorts `resources` by the attribute `by`, stably (RFC 7644 §3.4.2.3).
///
/// A multi-valued attribute sorts by its primary value, or else its first; a complex value
/// without a named sub-attribute by its `value`. Strings compare case-insensitively unless the
/// schema says `caseExact`; `dateTime` values compare as instants. Resources without a value
/// sort last when ascending, first when descending.
pub fn sort(resources: &mut [Value], by: &AttrPath, order: SortOrder, schema: &ResourceSchema) {
    let target = resolve(schema, by);
    let mut keyed: Vec<(Option<SortKey>, Value)> = resources
        .iter_mut()
        .map(|r| (target.as_ref().and_then(|t| sort_key(r, t, schema)), std::mem::take(r)))
        .collect();
    keyed.sort_by(|(a, _), (b, _)| {
        let ascending = match (a, b) {
            (Some(a), Some(b)) => a.compare(b),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        match order {
            SortOrder::Ascending => ascending,
            SortOrder::Descending => ascending.reverse(),
        }
    });
    for (slot, (_, value)) in resources.iter_mut().zip(keyed) {
        *slot = value;
    }
}

fn sort_key(resource: &Value, target: &Target, schema: &ResourceSchema) -> Option<SortKey> {
    let Target::Attr { scope, name, sub } = *target else { return None };
    let container = match scope {
        Scope::Core => resource,
        Scope::Extension(i) => member(resource, &schema.extensions.get(i)?.id)?,
    };
    let def = definition(schema, scope, name);
    let value = first_or_primary(member(container, name)?)?;
    let (value, leaf) = match (sub, value.is_object()) {
        (Some(sub), _) => (member(value, sub)?, def.and_then(|d| d.sub(sub))),
        (None, true) => (member(value, "value")?, def.and_then(|d| d.sub("value"))),
        (None, false) => (value, def),
    };
    key_of(value, leaf)
}

/// The element a multi-valued attribute sorts by: the primary one, or else the first.
fn first_or_primary(value: &Value) -> Option<&Value> {
    match value {
        Value::Array(items) => {
            items.iter().find(|i| member(i, "primary") == Some(&Value::Bool(true))).or_else(|| items.first())
        }
        _ => Some(value),
    }
}

/// The sort key of a simple value, typed by its definition `def` when the schema has one.
fn key_of(value: &Value, def: Option<&Attribute>) -> Option<SortKey> {
    match value {
        Value::Bool(b) => Some(SortKey::Bool(*b)),
        Value::Number(n) => n.as_f64().map(SortKey::Number),
        Value::String(s) => Some(string_key(s, def)),
        _ => None,
    }
}

/// A `dateTime` that parses sorts as an instant; anything else as text.
fn string_key(s: &str, def: Option<&Attribute>) -> SortKey {
    let instant = def.filter(|d| d.ty == AttrType::DateTime).and_then(|_| OffsetDateTime::parse(s, &Rfc3339).ok());
    match (instant, def.is_some_and(|d| d.case_exact)) {
        (Some(t), _) => SortKey::Instant(t),
        (None, true) => SortKey::Text(s.to_owned()),
        (None, false) => SortKey::Text(s.to_lowercase()),
    }
}

/// The member `name` of an object, compared case-insensitively (RFC 7643 §2.1).
fn member<'v>(value: &'v Value, name: &str) -> Option<&'v Value> {
    value.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::scim::error::ScimType;
    use crate::scim::filter::CompareOp;
    use crate::scim::schema::{ENTERPRISE_USER, USER, group_resource, user_resource};

    const MAX: usize = 100;

    fn path(s: &str) -> AttrPath {
        parse_attr_path(s).expect("test paths are valid")
    }

    fn paths(list: &[&str]) -> Vec<AttrPath> {
        list.iter().map(|s| path(s)).collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn query(list: &[(&str, &str)]) -> Result<ListQuery, ScimError> {
        ListQuery::from_query(&pairs(list), MAX)
    }

    fn rejected(result: Result<ListQuery, ScimError>) -> (Option<ScimType>, String) {
        match result {
            Ok(q) => panic!("accepted: {q:?}"),
            Err(e) => {
                assert_eq!(e.status, 400);
                (e.scim_type, e.detail)
            }
        }
    }

    // ----- query string -------------------------------------------------------------------

    #[test]
    fn empty_query_has_defaults() {
        assert_eq!(query(&[]), Ok(ListQuery::default()));
        assert_eq!(ListQuery::default().start_index, 1);
    }

    #[test]
    fn query_parses_every_parameter_case_insensitively() {
        let q = query(&[
            ("FILTER", r#"userName eq "bjensen""#),
            ("startindex", "3"),
            ("Count", "10"),
            ("sortBy", "name.givenName"),
            ("SORTORDER", "Descending"),
            ("attributes", "userName, name.givenName,,emails"),
            ("excludedAttributes", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager"),
            ("cursor", "ignored"),
        ])
        .expect("valid query");
        let expected = Filter::Compare { path: AttrPath::new("userName"), op: CompareOp::Eq, value: json!("bjensen") };
        assert_eq!(q.filter, Some(expected));
        assert_eq!((q.start_index, q.count), (3, Some(10)));
        assert_eq!(q.sort_by, Some(AttrPath::with_sub("name", "givenName")));
        assert_eq!(q.sort_order, SortOrder::Descending);
        assert_eq!(q.attributes, paths(&["userName", "name.givenName", "emails"]));
        assert_eq!(q.excluded_attributes[0].urn.as_deref(), Some(ENTERPRISE_USER));
        assert_eq!(q.excluded_attributes[0].name, "manager");
    }

    #[test]
    fn out_of_range_numbers_are_clamped() {
        let q = query(&[("startIndex", "0"), ("count", "-4")]).expect("valid");
        assert_eq!((q.start_index, q.count), (1, Some(0)));
        let q = query(&[("startIndex", "-99999999999999999999999"), ("count", "+500")]).expect("valid");
        assert_eq!((q.start_index, q.count), (1, Some(MAX)));
        let q =
            query(&[("startIndex", "99999999999999999999999"), ("count", " 99999999999999999999 ")]).expect("valid");
        let saturated = usize::try_from(i64::MAX).unwrap_or(usize::MAX);
        assert_eq!((q.start_index, q.count), (saturated, Some(MAX)));
    }

    #[test]
    fn bad_numbers_are_invalid_values() {
        for bad in ["", "ten", "1.5", "1e3", "--1", "+"] {
            let (ty, detail) = rejected(query(&[("count", bad)]));
            assert_eq!(ty, Some(ScimType::InvalidValue), "{bad:?}");
            assert!(detail.starts_with("count:"), "{detail}");
        }
        let (_, detail) = rejected(query(&[("startIndex", "x")]));
        assert_eq!(detail, "startIndex: 'x' is not an integer");
    }

    #[test]
    fn bad_filter_is_invalid_filter() {
        let (ty, detail) = rejected(query(&[("filter", "userName eq")]));
        assert_eq!(ty, Some(ScimType::InvalidFilter));
        assert!(detail.starts_with("filter: "), "{detail}");
    }

    #[test]
    fn blank_filter_means_no_filter() {
        assert_eq!(query(&[("filter", "  ")]).map(|q| q.filter), Ok(None));
    }

    #[test]
    fn bad_sort_and_paths_are_invalid_values() {
        let (ty, detail) = rejected(query(&[("sortOrder", "up")]));
        assert_eq!(ty, Some(ScimType::InvalidValue));
        assert_eq!(detail, "sortOrder: 'up' is neither 'ascending' nor 'descending'");
        for (param, value) in [("sortBy", "name..x"), ("attributes", "userName,emails[type"), ("sortBy", "")] {
            let (ty, detail) = rejected(query(&[(param, value)]));
            assert_eq!(ty, Some(ScimType::InvalidValue), "{param}={value}");
            assert!(detail.starts_with(&format!("{param}: ")), "{detail}");
        }
    }

    #[test]
    fn error_details_abbreviate_long_input() {
        let long = "é".repeat(1000);
        let (_, detail) = rejected(query(&[("sortOrder", &long)]));
        assert_eq!(detail, format!("sortOrder: '{}…' is neither 'ascending' nor 'descending'", "é".repeat(64)));
    }

    #[test]
    fn repeated_parameter_is_rejected() {
        let (ty, detail) = rejected(query(&[("count", "1"), ("COUNT", "2")]));
        assert_eq!(ty, Some(ScimType::InvalidValue));
        assert_eq!(detail, "'count' is given more than once");
    }

    #[test]
    fn list_parameters_may_repeat() {
        let q = query(&[("attributes", "userName"), ("Attributes", "name.givenName,emails")]).expect("lenient");
        assert_eq!(q.attributes, paths(&["userName", "name.givenName", "emails"]));
    }

    #[test]
    fn attributes_and_excluded_attributes_may_be_combined() {
        let q = query(&[("attributes", "name"), ("excludedAttributes", "name.givenName")]).expect("lenient");
        assert_eq!((q.attributes.len(), q.excluded_attributes.len()), (1, 1));
    }

    // ----- search body ---------------------------------------------------------------------

    fn search(body: Value) -> Result<ListQuery, ScimError> {
        ListQuery::from_search(&body, MAX)
    }

    #[test]
    fn search_body_of_rfc_7644_example_parses() {
        let q = search(json!({
            "schemas": [SEARCH_REQUEST],
            "attributes": ["displayName", "userName"],
            "excludedAttributes": [],
            "filter": "displayName sw \"smith\"",
            "startIndex": 1,
            "count": 10,
            "sortBy": "userName",
            "sortOrder": "descending",
        }))
        .expect("valid search");
        assert_eq!(q.attributes, paths(&["displayName", "userName"]));
        assert!(q.excluded_attributes.is_empty());
        assert!(matches!(q.filter, Some(Filter::Compare { op: CompareOp::Sw, .. })));
        assert_eq!((q.start_index, q.count, q.sort_order), (1, Some(10), SortOrder::Descending));
        assert_eq!(q.sort_by, Some(path("userName")));
    }

    #[test]
    fn search_body_is_lenient_where_harmless() {
        let q = search(json!({
            "Schemas": [SEARCH_REQUEST.to_uppercase()],
            "ATTRIBUTES": "userName, emails.value",
            "filter": null,
            "count": -1,
            "startIndex": 0,
            "unknown": {"x": 1},
        }))
        .expect("valid search");
        assert_eq!(q.attributes, paths(&["userName", "emails.value"]));
        assert_eq!((q.filter, q.count, q.start_index), (None, Some(0), 1));
    }

    #[test]
    fn search_body_needs_the_search_request_schema() {
        for body in [json!({}), json!({"schemas": []}), json!({"schemas": USER}), json!([SEARCH_REQUEST]), json!(null)]
        {
            let (ty, _) = rejected(search(body.clone()));
            assert_eq!(ty, Some(ScimType::InvalidSyntax), "{body}");
        }
    }

    #[test]
    fn search_body_rejects_mistyped_members() {
        let cases = [
            ("count", json!("10"), "count: \"10\" is not an integer"),
            ("count", json!(1.5), "count: 1.5 is not an integer"),
            ("startIndex", json!(true), "startIndex: true is not an integer"),
            ("filter", json!(42), "filter: 42 is not a string"),
            ("sortOrder", json!(["ascending"]), "sortOrder: [\"ascending\"] is not a string"),
            ("attributes", json!(["userName", 1]), "attributes: 1 is not a string"),
            ("excludedAttributes", json!({"a": 1}), "excludedAttributes: {\"a\":1} is not a string"),
        ];
        for (key, value, expected) in cases {
            let mut body = json!({ "schemas": [SEARCH_REQUEST] });
            body[key] = value;
            let (ty, detail) = rejected(search(body));
            assert_eq!(ty, Some(ScimType::InvalidValue), "{key}");
            assert_eq!(detail, expected);
        }
        let (ty, _) = rejected(search(json!({ "schemas": [SEARCH_REQUEST], "filter": "(" })));
        assert_eq!(ty, Some(ScimType::InvalidFilter));
    }

    #[test]
    fn search_body_rejects_a_member_given_twice_in_different_case() {
        let (_, detail) = rejected(search(json!({ "schemas": [SEARCH_REQUEST], "count": 1, "Count": 2 })));
        assert_eq!(detail, "'count' is given more than once");
    }

    // ----- paging and envelope --------------------------------------------------------------

    #[test]
    fn page_windows_the_result_set() {
        let q = |start_index, count| ListQuery { start_index, count, ..ListQuery::default() };
        assert_eq!(q(1, None).page(10, 50), 0..10);
        assert_eq!(q(3, Some(2)).page(10, 50), 2..4);
        assert_eq!(q(9, Some(5)).page(10, 50), 8..10);
        assert_eq!(q(11, None).page(10, 50), 10..10);
        assert_eq!(q(1, Some(0)).page(10, 50), 0..0);
        assert_eq!(q(usize::MAX, Some(usize::MAX)).page(10, 50), 10..10);
        assert_eq!(q(2, None).page(10, 3), 1..4);
    }

    #[test]
    fn list_response_always_has_resources() {
        let empty = list_response(vec![], 0, 1);
        assert_eq!(
            empty,
            json!({ "schemas": [LIST_RESPONSE], "totalResults": 0, "startIndex": 1, "itemsPerPage": 0, "Resources": [] })
        );
        let page = list_response(vec![json!({"id": "a"}), json!({"id": "b"})], 7, 3);
        assert_eq!((page["totalResults"].clone(), page["itemsPerPage"].clone()), (json!(7), json!(2)));
        assert_eq!(page["startIndex"], 3);
    }

    // ----- projection -----------------------------------------------------------------------

    fn bjensen() -> Value {
        json!({
            "schemas": [USER, ENTERPRISE_USER],
            "id": "2819c223",
            "externalId": "701984",
            "userName": "bjensen@example.com",
            "password": "t1meMa$heen",
            "name": { "formatted": "Ms. Barbara J Jensen III", "familyName": "Jensen", "givenName": "Barbara" },
            "displayName": "Babs Jensen",
            "emails": [
                { "value": "bjensen@example.com", "type": "work", "primary": true },
                { "type": "home" },
            ],
            "groups": [{ "value": "e9e30dba", "display": "Tour Guides" }],
            ENTERPRISE_USER: { "employeeNumber": "701984", "manager": { "value": "26118915", "displayName": "John Smith" } },
            "meta": { "resourceType": "User", "lastModified": "2011-05-13T04:42:34Z", "location": "https://x/Users/2819c223" },
        })
    }

    fn projected(attributes: &[&str], excluded: &[&str]) -> Value {
        project(bjensen(), &user_resource(), &paths(attributes), &paths(excluded))
    }

    fn keys(v: &Value) -> Vec<&str> {
        v.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default()
    }

    #[test]
    fn default_projection_drops_never_returned_attributes_only() {
        let mut expected = bjensen();
        expected.as_object_mut().map(|o| o.remove("password"));
        assert_eq!(projected(&[], &[]), expected);
    }

    #[test]
    fn attributes_select_only_what_is_named_plus_always_returned() {
        let v = projected(&["userName"], &[]);
        assert_eq!(
            v,
            json!({ "schemas": [USER, ENTERPRISE_USER], "id": "2819c223", "userName": "bjensen@example.com" })
        );
    }

    #[test]
    fn attribute_names_match_case_insensitively() {
        let v = projected(&["USERNAME", "Name.GivenName", "META.lastmodified"], &[]);
        assert_eq!(keys(&v), ["schemas", "id", "userName", "name", "meta"]);
        assert_eq!(v["name"], json!({ "givenName": "Barbara" }));
        assert_eq!(v["meta"], json!({ "lastModified": "2011-05-13T04:42:34Z" }));
    }

    #[test]
    fn sub_attribute_selection_applies_to_each_element() {
        let v = projected(&["emails.value"], &[]);
        assert_eq!(v["emails"], json!([{ "value": "bjensen@example.com" }]), "elements left empty are dropped");
        let v = projected(&["emails.display"], &[]);
        assert!(v.get("emails").is_none(), "an attribute left empty is dropped");
        let v = projected(&["emails.value", "emails.type"], &[]);
        assert_eq!(v["emails"], json!([{ "value": "bjensen@example.com", "type": "work" }, { "type": "home" }]));
    }

    #[test]
    fn extension_attributes_select_by_urn() {
        let v = projected(&[&format!("{ENTERPRISE_USER}:employeeNumber")], &[]);
        assert_eq!(v[ENTERPRISE_USER], json!({ "employeeNumber": "701984" }));
        let v = projected(&[&format!("{ENTERPRISE_USER}:manager.value")], &[]);
        assert_eq!(v[ENTERPRISE_USER], json!({ "manager": { "value": "26118915" } }));
        let v = projected(&[ENTERPRISE_USER], &[]);
        assert_eq!(v[ENTERPRISE_USER], bjensen()[ENTERPRISE_USER]);
        assert!(v.get("userName").is_none());
        let v = projected(&[&ENTERPRISE_USER.to_lowercase()], &[]);
        assert_eq!(v[ENTERPRISE_USER], bjensen()[ENTERPRISE_USER]);
    }

    #[test]
    fn extension_left_empty_is_dropped_but_schemas_stay() {
        let v = projected(&["userName", &format!("{ENTERPRISE_USER}:department")], &[]);
        assert!(v.get(ENTERPRISE_USER).is_none());
        assert_eq!(v["schemas"], json!([USER, ENTERPRISE_USER]));
        let v = projected(&[], &[&format!("{ENTERPRISE_USER}:employeeNumber"), &format!("{ENTERPRISE_USER}:manager")]);
        assert!(v.get(ENTERPRISE_USER).is_none());
    }

    #[test]
    fn core_urn_qualified_names_select_core_attributes() {
        let v = projected(&[&format!("{USER}:userName")], &[]);
        assert_eq!(keys(&v), ["schemas", "id", "userName"]);
        let v = projected(&[USER], &[]);
        assert!(v.get("displayName").is_some() && v.get(ENTERPRISE_USER).is_none());
    }

    #[test]
    fn excluded_attributes_remove_attributes_and_sub_attributes() {
        let v = projected(&[], &["emails", "name.familyName", "meta", ENTERPRISE_USER]);
        assert_eq!(keys(&v), ["schemas", "id", "externalId", "userName", "name", "displayName", "groups"]);
        assert_eq!(v["name"], json!({ "formatted": "Ms. Barbara J Jensen III", "givenName": "Barbara" }));
    }

    #[test]
    fn always_and_never_override_both_lists() {
        let v = projected(&["password", "emails"], &["id", "schemas"]);
        assert_eq!(keys(&v), ["schemas", "id", "emails"]);
    }

    #[test]
    fn attributes_then_excluded_when_both_are_given() {
        let v = projected(&["name", "displayName"], &["name.givenName", "displayName"]);
        assert_eq!(v["name"], json!({ "formatted": "Ms. Barbara J Jensen III", "familyName": "Jensen" }));
        assert!(v.get("displayName").is_none());
    }

    #[test]
    fn unknown_paths_are_ignored() {
        assert_eq!(
            projected(&["nosuch", "urn:x:y:z"], &[]),
            json!({ "schemas": [USER, ENTERPRISE_USER], "id": "2819c223" })
        );
        assert_eq!(projected(&[], &["nosuch", "urn:x:y:z"]), projected(&[], &[]));
    }

    #[test]
    fn sub_attribute_of_a_simple_attribute_selects_nothing() {
        assert!(projected(&["userName.value"], &[]).get("userName").is_none());
        assert_eq!(projected(&[], &["userName.value"])["userName"], "bjensen@example.com");
    }

    fn with_returned(name: &str, sub: Option<&str>, returned: Returned) -> ResourceSchema {
        let mut schema = user_resource();
        for a in schema.core.attributes.iter_mut().filter(|a| a.name == name) {
            match sub {
                Some(s) => a.sub_attributes.iter_mut().filter(|x| x.name == s).for_each(|x| x.returned = returned),
                None => a.returned = returned,
            }
        }
        schema
    }

    #[test]
    fn request_attributes_appear_only_when_named() {
        let schema = with_returned("displayName", None, Returned::Request);
        let project_with = |a: &[&str]| project(bjensen(), &schema, &paths(a), &[]);
        assert!(project_with(&[]).get("displayName").is_none());
        assert!(project_with(&[USER]).get("displayName").is_none(), "a whole schema brings default ones");
        assert_eq!(project_with(&["displayName"])["displayName"], "Babs Jensen");
    }

    #[test]
    fn returned_rules_apply_to_sub_attributes() {
        let schema = with_returned("emails", Some("type"), Returned::Request);
        assert_eq!(
            project(bjensen(), &schema, &[], &[])["emails"],
            json!([{ "value": "bjensen@example.com", "primary": true }])
        );
        assert_eq!(
            project(bjensen(), &schema, &paths(&["emails.type"]), &[])["emails"],
            json!([{ "type": "work" }, { "type": "home" }])
        );
        let schema = with_returned("name", Some("givenName"), Returned::Always);
        let v = project(bjensen(), &schema, &paths(&["name.familyName"]), &paths(&["name.givenName"]));
        assert_eq!(v["name"], json!({ "familyName": "Jensen", "givenName": "Barbara" }));
        let schema = with_returned("name", Some("formatted"), Returned::Never);
        assert_eq!(
            project(bjensen(), &schema, &paths(&["name"]), &[])["name"],
            json!({ "familyName": "Jensen", "givenName": "Barbara" })
        );
    }

    #[test]
    fn always_returned_attributes_still_lose_excluded_sub_attributes() {
        let schema = with_returned("name", None, Returned::Always);
        let v = project(bjensen(), &schema, &paths(&["userName"]), &paths(&["name", "name.formatted"]));
        assert_eq!(v["name"], json!({ "familyName": "Jensen", "givenName": "Barbara" }));
    }

    #[test]
    fn non_object_resources_pass_through() {
        assert_eq!(project(json!([1, 2]), &user_resource(), &paths(&["userName"]), &[]), json!([1, 2]));
    }

    // ----- sorting ---------------------------------------------------------------------------

    fn ids(resources: &[Value]) -> Vec<&str> {
        resources.iter().map(|r| r["id"].as_str().unwrap_or("?")).collect()
    }

    fn sorted(mut resources: Vec<Value>, by: &str, order: SortOrder) -> Vec<Value> {
        sort(&mut resources, &path(by), order, &user_resource());
        resources
    }

    fn users(names: &[(&str, Option<&str>)]) -> Vec<Value> {
        names
            .iter()
            .map(|(id, user_name)| match user_name {
                Some(n) => json!({ "id": id, "userName": n }),
                None => json!({ "id": id }),
            })
            .collect()
    }

    #[test]
    fn sort_is_case_insensitive_missing_last_and_stable() {
        let list = users(&[("1", Some("bob")), ("2", None), ("3", Some("Alice")), ("4", Some("BOB")), ("5", None)]);
        assert_eq!(ids(&sorted(list.clone(), "userName", SortOrder::Ascending)), ["3", "1", "4", "2", "5"]);
        assert_eq!(ids(&sorted(list, "USERNAME", SortOrder::Descending)), ["2", "5", "1", "4", "3"]);
    }

    #[test]
    fn sort_respects_case_exact_attributes() {
        let list = vec![json!({"id": "b"}), json!({"id": "B"}), json!({"id": "a"})];
        assert_eq!(ids(&sorted(list, "id", SortOrder::Ascending)), ["B", "a", "b"]);
    }

    #[test]
    fn multi_valued_sorts_by_primary_or_first_value() {
        let list = vec![
            json!({"id": "1", "emails": [{"value": "z@x"}, {"value": "a@x"}]}),
            json!({"id": "2", "emails": [{"value": "y@x"}, {"value": "b@x", "primary": true}]}),
            json!({"id": "3", "emails": []}),
            json!({"id": "4", "emails": [{"value": "M@x"}]}),
        ];
        assert_eq!(ids(&sorted(list.clone(), "emails", SortOrder::Ascending)), ["2", "4", "1", "3"]);
        assert_eq!(ids(&sorted(list, "emails.value", SortOrder::Ascending)), ["2", "4", "1", "3"]);
    }

    #[test]
    fn sort_by_sub_attribute_extension_and_meta() {
        let list = vec![
            json!({"id": "1", "name": {"givenName": "b"}, ENTERPRISE_USER: {"employeeNumber": "2"},
                   "meta": {"lastModified": "2024-01-01T12:00:00+02:00"}}),
            json!({"id": "2", "name": {"givenName": "a"}, ENTERPRISE_USER: {"employeeNumber": "1"},
                   "meta": {"lastModified": "2024-01-01T11:00:00Z"}}),
        ];
        assert_eq!(ids(&sorted(list.clone(), "name.givenName", SortOrder::Ascending)), ["2", "1"]);
        let by_number = format!("{ENTERPRISE_USER}:employeeNumber");
        assert_eq!(ids(&sorted(list.clone(), &by_number, SortOrder::Descending)), ["1", "2"]);
        // 12:00+02:00 is 10:00Z, before 11:00Z, though it sorts after it as text.
        assert_eq!(ids(&sorted(list, "meta.lastModified", SortOrder::Ascending)), ["1", "2"]);
    }

    #[test]
    fn sort_by_booleans_and_unknown_attributes() {
        let list = vec![json!({"id": "1", "active": true}), json!({"id": "2", "active": false}), json!({"id": "3"})];
        assert_eq!(ids(&sorted(list.clone(), "active", SortOrder::Ascending)), ["2", "1", "3"]);
        assert_eq!(ids(&sorted(list.clone(), "nosuch", SortOrder::Descending)), ["1", "2", "3"]);
        assert_eq!(ids(&sorted(list, ENTERPRISE_USER, SortOrder::Ascending)), ["1", "2", "3"]);
    }

    #[test]
    fn group_sorts_by_display_name() {
        let mut groups = vec![json!({"id": "1", "displayName": "b"}), json!({"id": "2", "displayName": "A"})];
        sort(&mut groups, &path("displayName"), SortOrder::Ascending, &group_resource());
        assert_eq!(ids(&groups), ["2", "1"]);
    }

    // ----- properties --------------------------------------------------------------------------

    fn arb_user() -> impl Strategy<Value = Value> {
        (
            "[a-z0-9]{1,6}",
            proptest::option::of("[a-zA-Z]{0,4}"),
            proptest::option::of("[a-zA-Z]{0,4}"),
            proptest::option::of(any::<bool>()),
        )
            .prop_map(|(id, user_name, given, active)| {
                let mut user = json!({ "schemas": [USER], "id": id, "password": "secret" });
                if let Some(n) = user_name {
                    user["userName"] = json!(n);
                }
                if let Some(g) = given {
                    user["name"] = json!({ "givenName": g });
                }
                if let Some(a) = active {
                    user["active"] = json!(a);
                }
                user
            })
    }

    fn arb_paths() -> impl Strategy<Value = Vec<AttrPath>> {
        let names = ["userName", "name", "name.givenName", "active", "password", "id", "meta", USER];
        proptest::sample::subsequence(names.to_vec(), 0..=names.len()).prop_map(|p| paths(&p))
    }

    proptest! {
        #[test]
        fn projection_keeps_id_and_schemas_drops_password_and_is_idempotent(
            user in arb_user(), attributes in arb_paths(), excluded in arb_paths()
        ) {
            let schema = user_resource();
            let once = project(user.clone(), &schema, &attributes, &excluded);
            prop_assert_eq!(&once["id"], &user["id"]);
            prop_assert_eq!(&once["schemas"], &user["schemas"]);
            prop_assert!(once.get("password").is_none());
            prop_assert_eq!(project(once.clone(), &schema, &attributes, &excluded), once);
        }

        #[test]
        fn sort_orders_a_permutation_stably(users in proptest::collection::vec(arb_user(), 0..12), descending: bool) {
            let order = if descending { SortOrder::Descending } else { SortOrder::Ascending };
            let tagged: Vec<Value> = users.into_iter().enumerate().map(|(i, mut u)| { u["id"] = json!(i.to_string()); u }).collect();
            let mut out = tagged.clone();
            sort(&mut out, &path("userName"), order, &user_resource());
            let key = |v: &Value| v["userName"].as_str().map(str::to_lowercase);
            let index = |v: &Value| v["id"].as_str().and_then(|s| s.parse::<usize>().ok()).unwrap_or(usize::MAX);
            let mut seen: Vec<usize> = out.iter().map(index).collect();
            seen.sort_unstable();
            prop_assert_eq!(seen, (0..tagged.len()).collect::<Vec<_>>());
            for pair in out.windows(2) {
                let (a, b) = (key(&pair[0]), key(&pair[1]));
                // `None` (missing) sorts after every value when ascending.
                let ascending = match (&a, &b) { (Some(x), Some(y)) => x.cmp(y), (Some(_), None) => Ordering::Less, (None, Some(_)) => Ordering::Greater, (None, None) => Ordering::Equal };
                let ordering = if descending { ascending.reverse() } else { ascending };
                prop_assert!(ordering != Ordering::Greater);
                if ordering == Ordering::Equal {
                    prop_assert!(index(&pair[0]) < index(&pair[1]), "stable");
                }
            }
        }

        #[test]
        fn count_and_start_index_are_always_in_range(start in any::<i64>(), count in any::<i64>(), max in 0usize..1000) {
            let q = ListQuery::from_query(&pairs(&[("startIndex", &start.to_string()), ("count", &count.to_string())]), max);
            let q = q.map_err(|e| TestCaseError::fail(e.detail))?;
            prop_assert!(q.start_index >= 1);
            prop_assert!(q.count.is_some_and(|c| c <= max));
        }
    }
}
