//! Compiles a mapping spec into its executable form, once, when configuration loads.
//!
//! Everything that can be checked without calling the app is checked here, so that `scimbridge check`
//! and `serve` reject a broken mapping before any request depends on it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

use super::call::{Call, CallRole};
use super::errors::ErrorMap;
use super::pointer::Pointer;
use super::spec::{
    AttributeSpec, Direction, ListSpec, MappingFile, MembersSpec, PagingSpec, PagingStyle, ResourceSpec,
};
use super::template::{Expr, StrTemplate};
use crate::scim::filter::{CompareOp, Filter, parse_attr_path, parse_patch_path};
use crate::scim::schema::{self, Attribute, ResourceSchema};

/// The SCIM resource types a mapping can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    User,
    Group,
}

impl ResourceKind {
    /// `User` / `Group`.
    pub fn name(self) -> &'static str {
        match self {
            ResourceKind::User => "User",
            ResourceKind::Group => "Group",
        }
    }
    /// The endpoint segment: `Users` / `Groups`.
    pub fn endpoint(self) -> &'static str {
        match self {
            ResourceKind::User => "Users",
            ResourceKind::Group => "Groups",
        }
    }
    /// The attribute that names a resource uniquely and that SCIM requires: `userName` for a User,
    /// `displayName` for a Group.
    pub fn unique_name(self) -> &'static str {
        match self {
            ResourceKind::User => "userName",
            ResourceKind::Group => "displayName",
        }
    }
    /// Parses a resource type name (`User`).
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "User" => Some(ResourceKind::User),
            "Group" => Some(ResourceKind::Group),
            _ => None,
        }
    }
    /// Parses an endpoint segment (`Users`), case-insensitively.
    pub fn from_endpoint(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("Users") {
            Some(ResourceKind::User)
        } else if s.eq_ignore_ascii_case("Groups") {
            Some(ResourceKind::Group)
        } else {
            None
        }
    }
    /// The full RFC 7643 schema of this type, from which a mapping's schema is cut. Built once.
    pub fn full_schema(self) -> &'static ResourceSchema {
        static USER: std::sync::LazyLock<ResourceSchema> = std::sync::LazyLock::new(schema::user_resource);
        static GROUP: std::sync::LazyLock<ResourceSchema> = std::sync::LazyLock::new(schema::group_resource);
        match self {
            ResourceKind::User => &USER,
            ResourceKind::Group => &GROUP,
        }
    }
}

/// A mapping problem found at load, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}")]
pub struct CompileError {
    /// A readable path into the file, e.g. `resources.User.attributes[3].scim`.
    pub location: String,
    pub message: String,
    pub hint: Option<String>,
}

fn err(location: impl Into<String>, message: impl Into<String>) -> CompileError {
    CompileError { location: location.into(), message: message.into(), hint: None }
}

/// How the gateway authenticates to the app, as templates over `credentials`.
#[derive(Debug)]
pub enum AuthTemplate {
    Basic {
        username: StrTemplate,
        password: StrTemplate,
    },
    Bearer(StrTemplate),
    OAuth2 {
        token_url: StrTemplate,
        client_id: StrTemplate,
        client_secret: StrTemplate,
        scope: Option<StrTemplate>,
        audience: Option<StrTemplate>,
    },
}

impl AuthTemplate {
    fn compile(spec: &super::spec::AuthSpec) -> Result<Self, String> {
        use super::spec::AuthSpec;
        let t = |s: &String| StrTemplate::compile(s).map_err(|e| e.to_string());
        let opt = |s: &Option<String>| s.as_ref().map(t).transpose();
        Ok(match spec {
            AuthSpec::Basic { username, password } => {
                AuthTemplate::Basic { username: t(username)?, password: t(password)? }
            }
            AuthSpec::Bearer { token } => AuthTemplate::Bearer(t(token)?),
            AuthSpec::Oauth2ClientCredentials { token_url, client_id, client_secret, scope, audience } => {
                AuthTemplate::OAuth2 {
                    token_url: t(token_url)?,
                    client_id: t(client_id)?,
                    client_secret: t(client_secret)?,
                    scope: opt(scope)?,
                    audience: opt(audience)?,
                }
            }
        })
    }
}

/// A compiled mapping.
#[derive(Debug)]
pub struct Mapping {
    pub name: String,
    /// Headers for every call, as templates.
    pub headers: Vec<(String, StrTemplate)>,
    /// Authentication to the app.
    pub auth: Option<AuthTemplate>,
    pub timeout: Option<Duration>,
    pub errors: ErrorMap,
    resources: BTreeMap<ResourceKind, ResourceMapping>,
}

impl Mapping {
    /// The mapping of `kind`, if the app supports it.
    pub fn resource(&self, kind: ResourceKind) -> Option<&ResourceMapping> {
        self.resources.get(&kind)
    }
    /// All mapped resource types.
    pub fn resources(&self) -> impl Iterator<Item = &ResourceMapping> {
        self.resources.values()
    }
}

/// Where a mapping line puts its value on the SCIM side, in canonical spelling.
#[derive(Debug, Clone, PartialEq)]
pub struct ScimTarget {
    /// Extension schema URN; `None` for the core schema.
    pub urn: Option<String>,
    /// Top-level attribute name.
    pub name: String,
    /// Sub-attribute, for complex attributes.
    pub sub: Option<String>,
    /// For multi-valued attributes: the `eq` conditions that select (and, on read, build) the entry.
    pub select: Vec<(String, Value)>,
    /// Whether `name` is multi-valued.
    pub multi_valued: bool,
    /// The definition of the targeted (sub-)attribute.
    pub attribute: Attribute,
}

/// A compiled attribute mapping line.
#[derive(Debug)]
pub struct AttrMap {
    pub target: Option<ScimTarget>,
    /// Overrides the published `caseExact` of the target.
    pub case_exact: Option<bool>,
    /// Where the value is: in the app object, or (for `stored` lines) in the store record's map,
    /// under the target's path.
    pub app: Pointer,
    /// The gateway's store keeps the value; the app never sees it.
    pub stored: bool,
    pub direction: Direction,
    /// SCIM value → app value pairs.
    pub values: Vec<(Value, Value)>,
    pub to_app: Option<Expr>,
    pub to_scim: Option<Expr>,
    pub constant: Option<Value>,
    pub reference: Option<ResourceKind>,
    pub entry: Map<String, Value>,
    pub required: bool,
    /// Written on updates when the resource lacks the attribute.
    pub clear: Option<Value>,
}

/// An `eq` filter the app can answer itself.
#[derive(Debug)]
pub struct Search {
    pub urn: Option<String>,
    pub name: String,
    pub sub: Option<String>,
    pub query: Vec<(String, StrTemplate)>,
    /// A single-object lookup call, instead of list query parameters.
    pub lookup: Option<Call>,
}

/// How a list call pages.
#[derive(Debug)]
pub struct Paging {
    pub max_page_size: usize,
    pub style: PagingStyle,
    /// With `PagingStyle::Cursor`: where the next page's token is.
    pub next: Option<Pointer>,
}

/// Where a member's app id is in a member-list entry.
#[derive(Debug)]
pub enum MemberId {
    /// The entry itself is the id.
    Entry,
    Pointer(Pointer),
    /// An expression over `entry`.
    Expr(Expr),
}

/// A sub-resource read with the object.
#[derive(Debug)]
pub struct Extra {
    pub into: Pointer,
    pub call: Call,
    pub optional: bool,
}

/// The list call.
#[derive(Debug)]
pub struct ListMapping {
    pub call: Call,
    pub items: Pointer,
    pub total: Option<Pointer>,
    pub paging: Paging,
    pub search: Vec<Search>,
    /// Listed objects are read again (their list form is partial).
    pub reread: bool,
}

/// How group membership is reached in the app.
#[derive(Debug)]
pub struct MembersMapping {
    pub member_kind: ResourceKind,
    pub list: Call,
    pub items: Pointer,
    pub member_id: MemberId,
    /// Entries that are not members as far as SCIM is concerned.
    pub skip: Option<Expr>,
    pub total: Option<Pointer>,
    pub paging: Paging,
    pub add: Option<Call>,
    pub remove: Option<Call>,
    /// Whole-set replacement.
    pub set: Option<Call>,
    /// Statuses after which add/remove are verified against the member list.
    pub verify_on: Vec<u16>,
    /// Whether the remove call needs the member's list entry.
    pub remove_uses_entry: bool,
}

/// One resource type as the app holds it.
#[derive(Debug)]
pub struct ResourceMapping {
    pub kind: ResourceKind,
    /// Where the app id is in an app object.
    pub id: Pointer,
    pub attributes: Vec<AttrMap>,
    pub create: Call,
    /// Calls that complete a create, made after it with the new `id`.
    pub after_create: Vec<Call>,
    pub read: Call,
    /// The update calls (PUT and PATCH), in order; empty when the app cannot update.
    pub update: Vec<Call>,
    /// Whether an update needs the current app object first (several calls, or a `when`).
    pub update_reads_current: bool,
    pub delete: Call,
    pub list: ListMapping,
    pub members: Option<MembersMapping>,
    /// Sub-resources read with the object.
    pub extras: Vec<Extra>,
    /// Updates write `null` for mapped attributes the resource no longer has.
    pub clear_with_null: bool,
    /// The SCIM schema clients see: only what this mapping can hold.
    pub schema: ResourceSchema,
    /// Whether `externalId` lives in the app (else the gateway's store keeps it).
    pub external_id_in_app: bool,
}

/// Compiles and checks a mapping file; all problems are reported, not just the first.
pub fn compile(file: &MappingFile) -> Result<Mapping, Vec<CompileError>> {
    let mut errors = Vec::new();
    let headers = compile_pairs(&file.http.headers, "http.headers", &mut errors);
    let error_map = ErrorMap::compile(&file.errors).map_err(|m| err("errors", m));
    let auth = match file.http.auth.as_ref().map(AuthTemplate::compile).transpose() {
        Ok(a) => a,
        Err(m) => {
            errors.push(err("http.auth", m));
            None
        }
    };
    let mut resources = BTreeMap::new();
    for (name, spec) in &file.resources {
        let loc = format!("resources.{name}");
        let Some(kind) = ResourceKind::from_name(name) else {
            errors.push(CompileError {
                location: loc,
                message: format!("unknown resource type `{name}`"),
                hint: Some("use `User` or `Group`".into()),
            });
            continue;
        };
        match compile_resource(kind, spec, &loc) {
            Ok(r) => {
                resources.insert(kind, r);
            }
            Err(mut e) => errors.append(&mut e),
        }
    }
    if file.resources.is_empty() {
        errors.push(err("resources", "a mapping must map at least one resource type"));
    }
    // Judged on the file, not on what compiled: a resource with errors of its own still exists.
    let declared = |k: ResourceKind| file.resources.contains_key(k.name());
    for r in resources.values() {
        if let Some(m) = &r.members
            && !declared(m.member_kind)
        {
            errors.push(err(
                format!("resources.{}.members.resource", r.kind.name()),
                format!("members are `{}` but the mapping has no such resource", m.member_kind.name()),
            ));
        }
        for a in &r.attributes {
            if let Some(k) = a.reference
                && !declared(k)
            {
                errors.push(err(
                    format!("resources.{}.attributes", r.kind.name()),
                    format!("`reference: {}` names a resource the mapping does not map", k.name()),
                ));
            }
        }
    }
    match error_map {
        Ok(e) if errors.is_empty() => Ok(Mapping {
            name: file.app.clone(),
            headers,
            auth,
            timeout: file.http.timeout_ms.map(Duration::from_millis),
            errors: e,
            resources,
        }),
        Ok(_) => Err(errors),
        Err(e) => {
            errors.push(e);
            Err(errors)
        }
    }
}

fn compile_pairs(
    map: &BTreeMap<String, String>,
    loc: &str,
    errors: &mut Vec<CompileError>,
) -> Vec<(String, StrTemplate)> {
    map.iter()
        .filter_map(|(k, v)| match StrTemplate::compile(v) {
            Ok(t) => Some((k.clone(), t)),
            Err(e) => {
                errors.push(err(format!("{loc}.{k}"), e.to_string()));
                None
            }
        })
        .collect()
}

fn compile_resource(kind: ResourceKind, spec: &ResourceSpec, loc: &str) -> Result<ResourceMapping, Vec<CompileError>> {
    let mut errors = Vec::new();
    let full = kind.full_schema();
    let id = match Pointer::parse(&spec.id) {
        Ok(p) if !p.is_root() => Some(p),
        Ok(_) => {
            errors.push(err(format!("{loc}.id"), "the id path must name a field"));
            None
        }
        Err(e) => {
            errors.push(err(format!("{loc}.id"), e.to_string()));
            None
        }
    };
    let mut attributes = Vec::new();
    for (i, a) in spec.attributes.iter().enumerate() {
        match compile_attribute(a, full, &format!("{loc}.attributes[{i}]")) {
            Ok(m) => attributes.push(m),
            Err(e) => errors.push(e),
        }
    }
    check_call_keys(spec, loc, &mut errors);
    let mut call = |c: &super::spec::CallSpec, role: CallRole, what: &str| match Call::compile(c, role) {
        Ok(c) => Some(c),
        Err(m) => {
            errors.push(err(format!("{loc}.operations.{what}"), m));
            None
        }
    };
    let ops = &spec.operations;
    let create_specs = ops.create.to_vec();
    let create = create_specs.first().and_then(|c| call(c, CallRole::Create, "create"));
    let after_create: Vec<Option<Call>> = create_specs
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, c)| call(c, CallRole::AfterCreate, &format!("create[{i}]")))
        .collect();
    let read = call(&ops.read, CallRole::Read, "read");
    let update: Vec<Option<Call>> = match &ops.replace {
        Some(r) => {
            let calls = r.to_vec();
            let many = calls.len() > 1;
            calls
                .into_iter()
                .enumerate()
                .map(|(i, c)| {
                    call(c, CallRole::Replace, &if many { format!("replace[{i}]") } else { "replace".to_owned() })
                })
                .collect()
        }
        None => Vec::new(),
    };
    let delete = call(&ops.delete, CallRole::Delete, "delete");
    let mut list = compile_list(&ops.list, full, &format!("{loc}.operations.list"), &mut errors);
    let mut extras = Vec::new();
    for (i, e) in spec.extras.iter().enumerate() {
        let eloc = format!("{loc}.extras[{i}]");
        let into = parse_pointer(&e.into, &format!("{eloc}.into"), &mut errors);
        match (into, Call::compile(&e.request, CallRole::Extra)) {
            (Some(into), Ok(call)) if !into.is_root() => extras.push(Extra { into, call, optional: e.optional }),
            (Some(_), Ok(_)) => errors.push(err(format!("{eloc}.into"), "`into` must name a field")),
            (_, Err(m)) => errors.push(err(format!("{eloc}.request"), m)),
            (None, Ok(_)) => {}
        }
    }
    if let Some(l) = &mut list {
        l.reread |= !extras.is_empty();
    }
    let members = match &spec.members {
        Some(m) if kind == ResourceKind::Group => compile_members(m, &format!("{loc}.members"), &mut errors),
        Some(_) => {
            errors.push(err(format!("{loc}.members"), "only a Group has members"));
            None
        }
        None => None,
    };
    let required_name = kind.unique_name();
    if !attributes.iter().any(|a| {
        a.direction != Direction::ToApp
            && a.target.as_ref().is_some_and(|t| t.urn.is_none() && t.sub.is_none() && t.name == required_name)
    }) {
        errors.push(CompileError {
            location: format!("{loc}.attributes"),
            message: format!("`{required_name}` must be mapped: SCIM requires it on every {}", kind.name()),
            hint: Some(format!("add `- scim: {required_name}` with the app field that holds it")),
        });
    }
    let (Some(id), Some(create), Some(read), Some(delete), Some(list)) = (id, create, read, delete, list) else {
        return Err(errors);
    };
    let Some(update) = update.into_iter().collect::<Option<Vec<Call>>>() else {
        return Err(errors);
    };
    if create_specs.is_empty() {
        errors.push(err(format!("{loc}.operations.create"), "needs at least one call"));
    }
    let Some(after_create) = after_create.into_iter().collect::<Option<Vec<Call>>>() else {
        return Err(errors);
    };
    let update_reads_current = update.len() > 1 || update.iter().any(|c| c.when.is_some());
    if !errors.is_empty() {
        return Err(errors);
    }
    let external_id_in_app =
        attributes.iter().any(|a| a.target.as_ref().is_some_and(|t| t.urn.is_none() && t.name == "externalId"));
    let schema = super::transform::published_schema(full, &attributes, members.as_ref(), !update.is_empty());
    Ok(ResourceMapping {
        kind,
        id,
        attributes,
        create,
        after_create,
        read,
        update,
        update_reads_current,
        delete,
        list,
        members,
        extras,
        clear_with_null: spec.clear_with_null,
        schema,
        external_id_in_app,
    })
}

fn compile_attribute(a: &AttributeSpec, full: &ResourceSchema, loc: &str) -> Result<AttrMap, CompileError> {
    let target = a.scim.as_deref().map(|s| scim_target(s, full, &format!("{loc}.scim"))).transpose()?;
    let app = match (&a.app, a.stored, &target) {
        (Some(p), false, _) => {
            let app = Pointer::parse(p).map_err(|e| err(format!("{loc}.app"), e.to_string()))?;
            if app.is_root() {
                return Err(err(format!("{loc}.app"), "the app path must name a field"));
            }
            app
        }
        (None, true, Some(t)) => {
            if a.constant.is_some() || a.to_app.is_some() || a.reference.is_some() || a.direction != Direction::Both {
                return Err(err(
                    loc,
                    "a `stored` line keeps the SCIM value as is: no constant, to_app, reference or direction",
                ));
            }
            Pointer::parse(&format!("/{}", super::transform::display_target(t).replace('~', "~0").replace('/', "~1")))
                .map_err(|e| err(loc, e.to_string()))?
        }
        (None, true, None) => return Err(err(loc, "`stored` needs a `scim` attribute")),
        (Some(_), true, _) => return Err(err(loc, "give `app` or `stored: true`, not both")),
        (None, false, _) => {
            return Err(CompileError {
                location: format!("{loc}.app"),
                message: "a mapping line needs `app` (where the app holds the value)".into(),
                hint: Some("use `stored: true` when the app has no field for it and the gateway should keep it".into()),
            });
        }
    };
    if let Some(t) = &target {
        check_target_writability(t, a.direction, loc)?;
        check_entry(t, a, full, loc)?;
    }
    let expr = |src: &Option<String>, what: &str| {
        src.as_deref().map(Expr::compile).transpose().map_err(|e| err(format!("{loc}.{what}"), e.to_string()))
    };
    let to_app = expr(&a.to_app, "to_app")?;
    let to_scim = expr(&a.to_scim, "to_scim")?;
    match (&target, &a.constant) {
        (None, None) => {
            return Err(CompileError {
                location: loc.to_owned(),
                message: "a mapping line needs `scim` (an attribute) or `constant` (a fixed app value)".into(),
                hint: None,
            });
        }
        (Some(_), Some(_)) => return Err(err(loc, "`constant` lines have no `scim` attribute")),
        _ => {}
    }
    let reference = match a.reference.as_deref() {
        Some(r) => Some(
            ResourceKind::from_name(r)
                .ok_or_else(|| err(format!("{loc}.reference"), format!("unknown resource `{r}`")))?,
        ),
        None => None,
    };
    let values = match &a.values {
        Some(table) => {
            let ty = target.as_ref().map(|t| t.attribute.ty);
            table
                .iter()
                .map(|(k, v)| {
                    let key = match ty {
                        Some(schema::AttrType::Boolean) => match k.to_ascii_lowercase().as_str() {
                            "true" => Value::Bool(true),
                            "false" => Value::Bool(false),
                            _ => return Err(err(format!("{loc}.values"), format!("`{k}` is not a boolean"))),
                        },
                        Some(schema::AttrType::Integer) => k
                            .parse::<i64>()
                            .map(Value::from)
                            .map_err(|_| err(format!("{loc}.values"), format!("`{k}` is not an integer")))?,
                        _ => Value::String(k.clone()),
                    };
                    Ok((key, v.clone()))
                })
                .collect::<Result<Vec<_>, _>>()?
        }
        None => Vec::new(),
    };
    Ok(AttrMap {
        target,
        app,
        stored: a.stored,
        direction: a.direction,
        values,
        to_app,
        to_scim,
        constant: a.constant.clone(),
        reference,
        entry: a.entry.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        required: a.required,
        clear: a.clear.clone(),
        case_exact: a.case_exact,
    })
}

/// `id` and `meta` belong to the gateway; other read-only attributes can only be read from the app.
fn check_target_writability(t: &ScimTarget, direction: Direction, loc: &str) -> Result<(), CompileError> {
    if t.urn.is_none() && (t.name == "id" || t.name == "meta") {
        return Err(CompileError {
            location: format!("{loc}.scim"),
            message: format!("`{}` is kept by the gateway and cannot be mapped", t.name),
            hint: Some("map `externalId` or another attribute instead".into()),
        });
    }
    let read_only = t.attribute.mutability == schema::Mutability::ReadOnly;
    if read_only && direction != Direction::ToScim {
        return Err(CompileError {
            location: format!("{loc}.scim"),
            message: format!("`{}` is read-only in SCIM: clients cannot write it", t.name),
            hint: Some("add `direction: to_scim` to read it from the app".into()),
        });
    }
    Ok(())
}

/// `entry` adds sub-attributes to a selected entry of a multi-valued attribute: it needs a selector,
/// and its keys must be sub-attributes of that attribute.
fn check_entry(t: &ScimTarget, a: &AttributeSpec, full: &ResourceSchema, loc: &str) -> Result<(), CompileError> {
    if a.entry.is_empty() {
        return Ok(());
    }
    if t.select.is_empty() {
        return Err(err(
            format!("{loc}.entry"),
            "`entry` needs an entry selector such as `emails[type eq \"work\"].value`",
        ));
    }
    let top = full.find(t.urn.as_deref(), &t.name, None).ok_or_else(|| err(loc, "unknown attribute"))?;
    for k in a.entry.keys() {
        if top.sub(k).is_none() {
            return Err(err(format!("{loc}.entry"), format!("`{}` has no sub-attribute `{k}`", top.name)));
        }
    }
    Ok(())
}

/// Resolves a mapping's SCIM path against the full schema into canonical spelling.
fn scim_target(path: &str, full: &ResourceSchema, loc: &str) -> Result<ScimTarget, CompileError> {
    let p = parse_patch_path(path).map_err(|e| err(loc, format!("`{path}` is not a SCIM attribute path: {e}")))?;
    let urn = match p.attr.urn.as_deref() {
        Some(u) if u.eq_ignore_ascii_case(&full.core.id) => None,
        Some(u) => Some(
            full.schema(u)
                .map(|s| s.id.clone())
                .ok_or_else(|| err(loc, format!("unknown schema `{u}` in `{path}`")))?,
        ),
        None => None,
    };
    let top = full.find(urn.as_deref(), &p.attr.name, None).ok_or_else(|| unknown_attr(loc, path, full))?.clone();
    let sub_name = p.attr.sub.as_deref().or(p.sub.as_deref());
    let attribute = match sub_name {
        Some(s) => top.sub(s).cloned().ok_or_else(|| err(loc, format!("`{}` has no sub-attribute `{s}`", top.name)))?,
        None => top.clone(),
    };
    let mut select = Vec::new();
    if let Some(f) = &p.filter {
        if !top.multi_valued {
            return Err(err(loc, format!("`{}` is not multi-valued: a `[filter]` cannot select an entry", top.name)));
        }
        collect_eqs(f, &top, &mut select).map_err(|m| err(loc, m))?;
    } else if top.multi_valued && sub_name.is_some() {
        return Err(CompileError {
            location: loc.to_owned(),
            message: format!(
                "`{path}` names a sub-attribute of multi-valued `{}` without selecting an entry",
                top.name
            ),
            hint: Some(format!(
                "select one entry, e.g. `{}[type eq \"work\"].{}`",
                top.name,
                sub_name.unwrap_or("value")
            )),
        });
    }
    if attribute.ty == schema::AttrType::Complex && sub_name.is_none() {
        return Err(err(loc, format!("`{path}` is complex: map each sub-attribute on its own line")));
    }
    Ok(ScimTarget {
        urn,
        name: top.name.clone(),
        sub: sub_name.and_then(|s| top.sub(s)).map(|a| a.name.clone()),
        select,
        multi_valued: top.multi_valued,
        attribute,
    })
}

fn unknown_attr(loc: &str, path: &str, full: &ResourceSchema) -> CompileError {
    CompileError {
        location: loc.to_owned(),
        message: format!("`{path}` is not an attribute of the SCIM {} schema", full.name),
        hint: Some("extension attributes need their schema URN, e.g. `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department`".into()),
    }
}

/// Flattens `a eq x and b eq y` into `[(a, x), (b, y)]`; any other filter cannot build an entry.
fn collect_eqs(f: &Filter, top: &Attribute, out: &mut Vec<(String, Value)>) -> Result<(), String> {
    match f {
        Filter::And(a, b) => {
            collect_eqs(a, top, out)?;
            collect_eqs(b, top, out)
        }
        Filter::Compare { path, op: CompareOp::Eq, value } if path.urn.is_none() && path.sub.is_none() => {
            let sub =
                top.sub(&path.name).ok_or_else(|| format!("`{}` has no sub-attribute `{}`", top.name, path.name))?;
            out.push((sub.name.clone(), value.clone()));
            Ok(())
        }
        _ => Err("an entry selector may only join `sub eq value` comparisons with `and`".into()),
    }
}

fn compile_list(
    spec: &ListSpec,
    full: &ResourceSchema,
    loc: &str,
    errors: &mut Vec<CompileError>,
) -> Option<ListMapping> {
    let call = match Call::compile(&spec.request, CallRole::List) {
        Ok(c) => Some(c),
        Err(m) => {
            errors.push(err(format!("{loc}.request"), m));
            None
        }
    };
    let items = parse_pointer(&spec.items, &format!("{loc}.items"), errors);
    let total = spec.total.as_deref().map(|t| parse_pointer(t, &format!("{loc}.total"), errors));
    let paging = compile_paging(&spec.paging, &format!("{loc}.paging"), errors);
    let mut search = Vec::new();
    for (attr, s) in &spec.search {
        let sloc = format!("{loc}.search.{attr}");
        let Ok(p) = parse_attr_path(attr) else {
            errors.push(err(&sloc, format!("`{attr}` is not an attribute path")));
            continue;
        };
        let urn = p.urn.as_deref().filter(|u| !u.eq_ignore_ascii_case(&full.core.id)).map(str::to_owned);
        let Some(top) = full.find(urn.as_deref(), &p.name, None) else {
            errors.push(unknown_attr(&sloc, attr, full));
            continue;
        };
        let sub = match p.sub.as_deref() {
            Some(s) => match top.sub(s) {
                Some(a) => Some(a.name.clone()),
                None => {
                    errors.push(err(&sloc, format!("`{}` has no sub-attribute `{s}`", top.name)));
                    continue;
                }
            },
            None => None,
        };
        let query = compile_pairs(&s.query, &sloc, errors);
        let lookup = match (&s.lookup, s.query.is_empty()) {
            (Some(c), true) => match Call::compile(c, CallRole::Lookup) {
                Ok(c) => Some(c),
                Err(m) => {
                    errors.push(err(format!("{sloc}.lookup"), m));
                    continue;
                }
            },
            (Some(_), false) => {
                errors.push(err(&sloc, "give `query` or `lookup`, not both"));
                continue;
            }
            (None, true) => {
                errors.push(err(&sloc, "a search needs `query` (list parameters) or `lookup` (a call)"));
                continue;
            }
            (None, false) => None,
        };
        search.push(Search { urn, name: top.name.clone(), sub, query, lookup });
    }
    Some(ListMapping {
        call: call?,
        items: items?,
        total: total.map(|t| t.ok_or(())).transpose().ok()?,
        paging: paging?,
        search,
        reread: spec.partial,
    })
}

/// `when` only guards calls that complete a create or make an update, and `id_from` only applies
/// to the call that creates: elsewhere they would be silently ignored, so they are refused.
fn check_call_keys(spec: &ResourceSpec, loc: &str, errors: &mut Vec<CompileError>) {
    use super::spec::IdFrom;
    let ops = &spec.operations;
    let mut calls: Vec<(String, &super::spec::CallSpec, bool, bool)> = Vec::new();
    for (i, c) in ops.create.to_vec().into_iter().enumerate() {
        calls.push((format!("operations.create[{i}]"), c, i > 0, i == 0));
    }
    if let Some(r) = &ops.replace {
        for (i, c) in r.to_vec().into_iter().enumerate() {
            calls.push((format!("operations.replace[{i}]"), c, true, false));
        }
    }
    calls.push(("operations.read".into(), &ops.read, false, false));
    calls.push(("operations.delete".into(), &ops.delete, false, false));
    calls.push(("operations.list.request".into(), &ops.list.request, false, false));
    for (i, e) in spec.extras.iter().enumerate() {
        calls.push((format!("extras[{i}].request"), &e.request, false, false));
    }
    if let Some(m) = &spec.members {
        calls.push(("members.list.request".into(), &m.list.request, false, false));
        for (what, c) in [("members.add", &m.add), ("members.remove", &m.remove), ("members.set", &m.set)] {
            if let Some(c) = c {
                calls.push((what.into(), c, false, false));
            }
        }
    }
    for (what, call, when_ok, id_from_ok) in calls {
        if call.when.is_some() && !when_ok {
            errors.push(err(
                format!("{loc}.{what}.when"),
                "`when` only applies to completing create calls and update calls",
            ));
        }
        if call.id_from != IdFrom::Body && !id_from_ok {
            errors.push(err(format!("{loc}.{what}.id_from"), "`id_from` only applies to the first create call"));
        }
    }
}

/// Checks and compiles paging: a positive page size, and a `next` path exactly for cursor paging.
fn compile_paging(spec: &PagingSpec, loc: &str, errors: &mut Vec<CompileError>) -> Option<Paging> {
    if spec.max_page_size == 0 {
        errors.push(err(format!("{loc}.max_page_size"), "must be at least 1"));
        return None;
    }
    let next = match (spec.style, &spec.next) {
        (PagingStyle::Cursor, Some(p)) => Some(parse_pointer(p, &format!("{loc}.next"), errors)?),
        (PagingStyle::Cursor, None) => {
            errors.push(CompileError {
                location: loc.to_owned(),
                message: "cursor paging needs `next`: where an answer holds the next page's token".into(),
                hint: Some("e.g. `next: /next_token`".into()),
            });
            return None;
        }
        (_, Some(_)) => {
            errors.push(err(format!("{loc}.next"), "`next` only applies to `style: cursor`"));
            return None;
        }
        (_, None) => None,
    };
    Some(Paging { max_page_size: spec.max_page_size, style: spec.style, next })
}

/// Parses an app path, recording a problem at `loc` when it is invalid.
fn parse_pointer(path: &str, loc: &str, errors: &mut Vec<CompileError>) -> Option<Pointer> {
    match Pointer::parse(path) {
        Ok(p) => Some(p),
        Err(e) => {
            errors.push(err(loc, e.to_string()));
            None
        }
    }
}

fn compile_members(spec: &MembersSpec, loc: &str, errors: &mut Vec<CompileError>) -> Option<MembersMapping> {
    let member_kind = match ResourceKind::from_name(&spec.resource) {
        Some(k) => k,
        None => {
            errors.push(err(format!("{loc}.resource"), format!("unknown resource `{}`", spec.resource)));
            return None;
        }
    };
    let mut call = |c, role, what: &str| match Call::compile(c, role) {
        Ok(c) => Some(c),
        Err(m) => {
            errors.push(err(format!("{loc}.{what}"), m));
            None
        }
    };
    let list = call(&spec.list.request, CallRole::MembersList, "list.request");
    let add = spec.add.as_ref().map(|c| call(c, CallRole::MembersAdd, "add"));
    let remove = spec.remove.as_ref().map(|c| call(c, CallRole::MembersRemove, "remove"));
    let set = spec.set.as_ref().map(|c| call(c, CallRole::MembersSet, "set"));
    match (&spec.add, &spec.remove, &spec.set) {
        (Some(_), Some(_), _) | (None, None, Some(_)) => {}
        _ => errors.push(CompileError {
            location: loc.to_owned(),
            message: "members need `add` and `remove` calls, or a `set` call (or all three)".into(),
            hint: Some("`set` replaces the whole membership: its body sees `member_ids`".into()),
        }),
    }
    let items = parse_pointer(&spec.list.items, &format!("{loc}.list.items"), errors);
    let member_id = match (&spec.list.member_id, &spec.list.member_id_from) {
        (Some(_), Some(_)) => {
            errors.push(err(format!("{loc}.list"), "give `member_id` or `member_id_from`, not both"));
            None
        }
        (Some(p), None) => parse_pointer(p, &format!("{loc}.list.member_id"), errors).map(MemberId::Pointer),
        (None, Some(e)) => match Expr::compile(e) {
            Ok(e) => Some(MemberId::Expr(e)),
            Err(e) => {
                errors.push(err(format!("{loc}.list.member_id_from"), e.to_string()));
                None
            }
        },
        (None, None) => Some(MemberId::Entry),
    };
    let total = spec.list.total.as_deref().map(|p| parse_pointer(p, &format!("{loc}.list.total"), errors));
    let paging = compile_paging(&spec.list.paging, &format!("{loc}.list.paging"), errors);
    Some(MembersMapping {
        member_kind,
        list: list?,
        items: items?,
        member_id: member_id?,
        skip: match spec.list.skip.as_deref().map(Expr::compile).transpose() {
            Ok(s) => s,
            Err(e) => {
                errors.push(err(format!("{loc}.list.skip"), e.to_string()));
                return None;
            }
        },
        total: total.map(|p| p.ok_or(())).transpose().ok()?,
        paging: paging?,
        add: add.map(|c| c.ok_or(())).transpose().ok()?,
        remove: remove.map(|c| c.ok_or(())).transpose().ok()?,
        set: set.map(|c| c.ok_or(())).transpose().ok()?,
        verify_on: spec.verify_on.clone(),
        remove_uses_entry: spec.remove_uses_entry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal valid User mapping with `extra` appended to its attribute lines.
    fn mapping(extra: &str, method: &str) -> Result<Mapping, Vec<CompileError>> {
        let text = format!(
            r#"
app: t
resources:
  User:
    id: /id
    attributes:
      - scim: userName
        app: /login
{extra}
    operations:
      create: {{ method: {method}, path: /u, body: "{{{{ app }}}}" }}
      read: {{ method: GET, path: "/u/{{{{ id }}}}" }}
      delete: {{ method: DELETE, path: "/u/{{{{ id }}}}" }}
      list:
        request: {{ method: GET, path: /u }}
        items: /items
"#
        );
        let file: MappingFile = crate::config::parse_yaml(&text).expect("test YAML parses");
        compile(&file)
    }

    fn first_error(extra: &str) -> String {
        mapping(extra, "POST").err().map(|e| e[0].message.clone()).unwrap_or_default()
    }

    #[test]
    fn a_minimal_mapping_compiles_and_publishes_what_it_maps() {
        let m = mapping("      - scim: emails[type eq \"work\"].value\n        app: /mail", "POST").unwrap();
        let s = &m.resource(ResourceKind::User).unwrap().schema;
        assert!(s.find(None, "userName", None).is_some());
        assert!(s.find(None, "displayName", None).is_none(), "unmapped attributes are not published");
        assert_eq!(s.find(None, "emails", Some("type")).unwrap().canonical_values, vec!["work".to_owned()]);
    }

    #[test]
    fn gateway_owned_and_read_only_attributes_are_refused() {
        assert!(first_error("      - scim: id\n        app: /id").contains("kept by the gateway"));
        assert!(first_error("      - scim: meta.created\n        app: /c").contains("kept by the gateway"));
        assert!(first_error("      - scim: groups[type eq \"direct\"].value\n        app: /g").contains("read-only"));
        assert!(
            mapping(
                "      - scim: groups[type eq \"direct\"].value\n        app: /g\n        direction: to_scim",
                "POST"
            )
            .is_ok()
        );
    }

    #[test]
    fn entry_needs_a_selector_and_real_sub_attributes() {
        assert!(
            first_error("      - scim: title\n        app: /t\n        entry: { primary: true }")
                .contains("entry selector")
        );
        assert!(
            first_error(
                "      - scim: emails[type eq \"work\"].value\n        app: /m\n        entry: { colour: red }"
            )
            .contains("no sub-attribute `colour`")
        );
    }

    #[test]
    fn bad_paths_methods_and_templates_are_reported_with_their_location() {
        assert!(first_error("      - scim: nosuch\n        app: /x").contains("not an attribute"));
        assert!(first_error("      - scim: emails.value\n        app: /x").contains("without selecting an entry"));
        let e = mapping("", "FETCH").unwrap_err();
        assert!(e[0].location.ends_with("operations.create") && e[0].message.contains("unsupported HTTP method"));
        let e = mapping("      - scim: title\n        app: /t\n        to_app: \"value |\"", "POST").unwrap_err();
        assert!(e[0].location.ends_with("attributes[1].to_app"), "{:?}", e[0]);
    }

    #[test]
    fn updates_are_one_call_or_several_guarded_calls() {
        let with = |replace: &str| {
            let text = format!(
                "app: t\nresources:\n  User:\n    id: /id\n    attributes:\n      - scim: userName\n        app: /login\n    operations:\n      create: {{ method: POST, path: /u }}\n      read: {{ method: GET, path: /u }}\n      delete: {{ method: DELETE, path: /u }}\n{replace}      list:\n        request: {{ method: GET, path: /u }}\n        items: /items\n"
            );
            compile(&crate::config::parse_yaml::<MappingFile>(&text).expect("yaml")).map(|m| {
                let r = m.resource(ResourceKind::User).expect("user");
                (r.update.len(), r.update_reads_current, r.schema.find(None, "userName", None).map(|a| a.mutability))
            })
        };
        assert_eq!(with("").unwrap(), (0, false, Some(schema::Mutability::Immutable)), "no update: immutable");
        assert_eq!(with("      replace: { method: PUT, path: /u }\n").unwrap().0, 1);
        let many = "      replace:\n        - { method: PATCH, path: /u }\n        - { method: POST, path: /v, when: \"app.login != current.login\" }\n";
        assert_eq!(with(many).unwrap(), (2, true, Some(schema::Mutability::ReadWrite)));
        let bad = "      replace:\n        - { method: PATCH, path: /u }\n        - { method: PATCH, path: /u, when: \"app.login !=\" }\n";
        let e = with(bad).unwrap_err();
        assert!(e[0].location.ends_with("operations.replace[1]"), "{e:?}");
    }

    #[test]
    fn lines_sharing_an_attribute_publish_what_they_allow_together() {
        let m = mapping(
            "      - scim: title\n        app: /t\n      - scim: title\n        app: /t2\n        direction: to_scim",
            "POST",
        )
        .unwrap();
        let s = &m.resource(ResourceKind::User).unwrap().schema;
        assert_eq!(
            s.find(None, "title", None).unwrap().mutability,
            schema::Mutability::Immutable,
            "no replace: immutable, not readOnly"
        );
    }

    #[test]
    fn updates_write_a_lines_clear_value_for_absent_attributes() {
        let m = mapping("      - scim: title\n        app: /t\n        clear: \"\"", "POST").unwrap();
        let rm = m.resource(ResourceKind::User).unwrap();
        let none = |_: ResourceKind, _: &str| None;
        let scim = serde_json::json!({"userName": "x"});
        let update = super::super::transform::to_app(rm, &scim, &none, &Value::Null, true, false).unwrap();
        assert_eq!(update, serde_json::json!({"login": "x", "t": ""}));
        let create = super::super::transform::to_app(rm, &scim, &none, &Value::Null, false, false).unwrap();
        assert_eq!(create, serde_json::json!({"login": "x"}), "creates leave absent attributes out");
    }

    #[test]
    fn to_app_lines_publish_write_only() {
        let m = mapping("      - scim: password\n        app: /pw\n        direction: to_app", "POST").unwrap();
        let s = &m.resource(ResourceKind::User).unwrap().schema;
        let pw = s.find(None, "password", None).unwrap();
        assert_eq!((pw.mutability, pw.returned), (schema::Mutability::WriteOnly, schema::Returned::Never));
    }
}
