//! SCIM PATCH (RFC 7644 §3.5.2) with the request shapes Microsoft Entra ID and Okta really send.
//!
//! [`parse_request`] validates a PatchOp body, [`apply`] applies its operations to a resource
//! atomically, and [`membership_delta`] lets a gateway change a group's membership without reading
//! its member list first. Everything is driven by the [`ResourceSchema`]: names match
//! case-insensitively, values are checked against attribute types, mutability is enforced.
//!
//! Where clients and the RFC disagree, both shapes are accepted:
//! - op names in any case (`Add`, `replace`);
//! - booleans sent as the strings `"True"`/`"False"`, for every boolean attribute;
//! - `null` or `""` unassigns the target, for add as for replace (Entra's null-update test);
//!   `[]` or `{}` unassigns on replace and adds nothing on add (Entra's add-only role sync);
//! - a value path that matches nothing creates the element when its filter is only `eq`
//!   comparisons joined by `and`, so several `emails[type eq "work"].…` ops build one element;
//! - `remove` of `members` carrying a value removes only the listed members (Entra's non-RFC form);
//! - a no-path operation may use dotted, URN-qualified and extension keys (Entra) and carry the
//!   resource's own `id` (Okta);
//! - a reference such as `manager` may be an object, a bare id or a one-element array (Entra);
//! - app roles whose `value` is a JSON-encoded object are decoded (Entra).

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::error::{ScimError, ScimType};
use super::filter::{CompareOp, Filter, parse_patch_path};
use super::path::{AttrPath, PatchPath};
use super::schema::{AttrType, Attribute, GROUP, Mutability, ResourceSchema, Schema};

/// The message schema a PatchOp request body must declare (RFC 7644 §3.5.2).
pub const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The most operations one request may carry. Clients send a few dozen at most; the bound keeps
/// the cost of a hostile body predictable.
pub const MAX_OPERATIONS: usize = 1000;

type Object = Map<String, Value>;

/// A PATCH operation's `op`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Add,
    Replace,
    Remove,
}

impl OpKind {
    /// Parses an op name case-insensitively: Entra sends `Add`, the RFC spells `add`.
    pub fn parse(name: &str) -> Option<Self> {
        [OpKind::Add, OpKind::Replace, OpKind::Remove].into_iter().find(|kind| kind.as_str().eq_ignore_ascii_case(name))
    }

    /// The name as the RFC spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Add => "add",
            OpKind::Replace => "replace",
            OpKind::Remove => "remove",
        }
    }
}

/// One validated operation of a PatchOp request.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOperation {
    pub op: OpKind,
    pub path: Option<PatchPath>,
    /// The `value` member as sent: `Some(Value::Null)` when the client sent `null`, which
    /// unassigns, as opposed to no `value` at all.
    pub value: Option<Value>,
}

impl PatchOperation {
    /// The rules that hold whatever the resource: add and replace carry a value (RFC 7644
    /// §3.5.2.1, §3.5.2.3), and remove has a path (§3.5.2.2).
    fn check_shape(&self) -> Result<(), ScimError> {
        match (self.op, &self.path, &self.value) {
            (OpKind::Remove, None, _) => Err(ScimError::no_target("remove needs a `path`")),
            (OpKind::Add | OpKind::Replace, _, None) => {
                Err(ScimError::invalid_syntax(format!("{} needs a `value`", self.op.as_str())))
            }
            _ => Ok(()),
        }
    }
}

/// A membership change that can be applied without reading the current members.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MembershipDelta {
    /// Member ids to add, in request order, each once.
    pub add: Vec<String>,
    /// Member ids to remove, in request order, each once; none of them is also in `add`.
    pub remove: Vec<String>,
    /// The operations that do not touch `members`, in request order, for [`apply`].
    pub rest: Vec<PatchOperation>,
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

/// Validates and normalises a PatchOp request body: `schemas` must list [`PATCH_OP_SCHEMA`],
/// `Operations` must be a non-empty array of at most [`MAX_OPERATIONS`] operations, op names are
/// case-insensitive and paths are parsed. Errors are 400 `invalidSyntax`, or `invalidPath` for a
/// malformed path, and name the failing operation's index.
pub fn parse_request(body: &Value) -> Result<Vec<PatchOperation>, ScimError> {
    let body = body.as_object().ok_or_else(|| ScimError::invalid_syntax("a PatchOp body must be a JSON object"))?;
    if !declares_patch_op(body) {
        return Err(ScimError::invalid_syntax(format!("`schemas` must contain \"{PATCH_OP_SCHEMA}\"")));
    }
    let operations = match get_ci(body, "Operations") {
        Some(Value::Array(operations)) => operations,
        Some(_) => return Err(ScimError::invalid_syntax("`Operations` must be an array")),
        None => return Err(ScimError::invalid_syntax("missing `Operations`")),
    };
    if operations.is_empty() {
        return Err(ScimError::invalid_syntax("`Operations` is empty"));
    }
    if operations.len() > MAX_OPERATIONS {
        return Err(ScimError::invalid_syntax(format!(
            "{} operations in one request; at most {MAX_OPERATIONS} are accepted",
            operations.len()
        )));
    }
    operations.iter().enumerate().map(|(index, op)| parse_operation(op).map_err(|e| at_operation(index, e))).collect()
}

fn declares_patch_op(body: &Object) -> bool {
    match get_ci(body, "schemas") {
        Some(Value::Array(urns)) => {
            urns.iter().any(|urn| urn.as_str().is_some_and(|urn| urn.eq_ignore_ascii_case(PATCH_OP_SCHEMA)))
        }
        _ => false,
    }
}

fn parse_operation(op: &Value) -> Result<PatchOperation, ScimError> {
    let op = op.as_object().ok_or_else(|| ScimError::invalid_syntax("an operation must be a JSON object"))?;
    let kind = match get_ci(op, "op") {
        Some(Value::String(name)) => OpKind::parse(name).ok_or_else(|| {
            ScimError::invalid_syntax(format!("unknown op \"{}\": expected add, replace or remove", abbreviate(name)))
        })?,
        Some(_) => return Err(ScimError::invalid_syntax("`op` must be a string")),
        None => return Err(ScimError::invalid_syntax("missing `op`")),
    };
    // An empty path is how some clients spell "no path".
    let path = match get_ci(op, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(path)) if path.trim().is_empty() => None,
        Some(Value::String(path)) => Some(parse_path(path)?),
        Some(_) => return Err(ScimError::invalid_syntax("`path` must be a string")),
    };
    let operation = PatchOperation { op: kind, path, value: get_ci(op, "value").cloned() };
    operation.check_shape()?;
    Ok(operation)
}

/// Parses a PATCH path; a malformed one is 400 `invalidPath` (RFC 7644 §3.5.2).
fn parse_path(text: &str) -> Result<PatchPath, ScimError> {
    parse_patch_path(text.trim())
        .map_err(|e| ScimError::invalid_path(format!("invalid path \"{}\": {e}", abbreviate(text))))
}

/// Prefixes an error's detail with the index of the operation that caused it.
fn at_operation(index: usize, mut error: ScimError) -> ScimError {
    error.detail = format!("Operations[{index}]: {}", error.detail);
    error
}

/// Cuts client-supplied text so that error details stay short.
fn abbreviate(text: &str) -> String {
    const LIMIT: usize = 60;
    match text.char_indices().nth(LIMIT) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Applying
// ---------------------------------------------------------------------------------------------

/// Applies `ops` in order to `resource`, a SCIM resource as JSON (core attributes at the top level,
/// extension attributes under their schema URN). Atomic: on error `resource` is left unchanged
/// and the error names the failing operation.
pub fn apply(resource: &mut Value, ops: &[PatchOperation], schema: &ResourceSchema) -> Result<(), ScimError> {
    let mut draft = resource.clone();
    let root =
        draft.as_object_mut().ok_or_else(|| ScimError::status(500, "the stored resource is not a JSON object"))?;
    let mut patcher = Patcher { schema, touched: Vec::new() };
    for (index, op) in ops.iter().enumerate() {
        patcher.apply_op(root, op).map_err(|e| at_operation(index, e))?;
    }
    patcher.reconcile_schemas(root);
    *resource = draft;
    Ok(())
}

/// Applies operations to a draft of the resource.
struct Patcher<'s> {
    schema: &'s ResourceSchema,
    /// Extensions whose attributes this request targeted: their `schemas` entry is reconciled
    /// with their data at the end.
    touched: Vec<&'s Schema>,
}

/// An attribute definition with the extension defining it (`None` for core and common ones).
type Located<'s> = (Option<&'s Schema>, &'s Attribute);

/// Where a path points, resolved against the schema.
enum Target<'s> {
    /// A whole extension object, e.g. `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User`.
    Extension(&'s Schema),
    Attribute(AttrTarget<'s>),
}

impl<'s> Patcher<'s> {
    fn apply_op(&mut self, root: &mut Object, op: &PatchOperation) -> Result<(), ScimError> {
        op.check_shape()?;
        let value = op.value.as_ref();
        match &op.path {
            Some(path) => self.apply_path(root, op.op, path, value),
            None => self.apply_attributes(root, op.op, value.unwrap_or(&Value::Null)),
        }
    }

    /// A no-path add or replace: every key of `value` is applied as if it were the op's path
    /// (RFC 7644 §3.5.2.1), so Entra's `"name.givenName"` and URN-qualified keys work as well as
    /// plain names. `schemas` and `meta` are server-managed and ignored; `id` is accepted only
    /// unchanged, since Okta echoes it when renaming a group.
    fn apply_attributes(&mut self, root: &mut Object, kind: OpKind, value: &Value) -> Result<(), ScimError> {
        let Value::Object(attributes) = value else {
            return Err(ScimError::invalid_value("without a `path`, `value` must be an object of attributes"));
        };
        for (key, value) in attributes {
            if key.eq_ignore_ascii_case("schemas") || key.eq_ignore_ascii_case("meta") {
                continue;
            }
            if key.eq_ignore_ascii_case("id") {
                if get_ci(root, "id") == Some(value) {
                    continue;
                }
                return Err(ScimError::mutability("`id` is readOnly"));
            }
            self.apply_path(root, kind, &parse_path(key)?, Some(value))?;
        }
        Ok(())
    }

    fn apply_path(
        &mut self,
        root: &mut Object,
        kind: OpKind,
        path: &PatchPath,
        value: Option<&Value>,
    ) -> Result<(), ScimError> {
        match self.resolve(path)? {
            Target::Extension(extension) => self.apply_extension(root, kind, extension, value),
            Target::Attribute(target) => {
                target.check_writable()?;
                if let Some(extension) = target.extension {
                    self.touch(extension);
                }
                match container(root, target.extension, kind != OpKind::Remove) {
                    Some(container) => target.apply(container, kind, value),
                    // Removing from an extension the resource does not have changes nothing.
                    None => Ok(()),
                }
            }
        }
    }

    /// An op on a whole extension object. Its value is applied attribute by attribute, so
    /// replace updates the attributes it names and leaves the others, as for any complex
    /// attribute (RFC 7644 §3.5.2.3); an empty value or remove drops the whole extension.
    fn apply_extension(
        &mut self,
        root: &mut Object,
        kind: OpKind,
        extension: &'s Schema,
        value: Option<&Value>,
    ) -> Result<(), ScimError> {
        self.touch(extension);
        let value = value.unwrap_or(&Value::Null);
        let unassign = match (kind, emptiness(value)) {
            (OpKind::Remove, _) | (_, Emptiness::Blank) | (OpKind::Replace, Emptiness::Hollow) => true,
            (OpKind::Add, Emptiness::Hollow) => return Ok(()),
            _ => false,
        };
        if unassign {
            if let Some(Value::Object(data)) = get_ci(root, &extension.id) {
                for attribute in &extension.attributes {
                    ensure_not_required(data, attribute)?;
                }
            }
            // Emptied rather than removed, for `reconcile_schemas` to drop it with its URN.
            if get_ci(root, &extension.id).is_some() {
                set_ci(root, &extension.id, Value::Object(Object::new()));
            }
            return Ok(());
        }
        let Value::Object(attributes) = value else {
            return Err(ScimError::invalid_value(format!("{} must be an object of its attributes", extension.id)));
        };
        for (key, value) in attributes {
            // Client libraries serialise an extension object with its own `schemas`; it carries no data.
            if key.eq_ignore_ascii_case("schemas") || key.eq_ignore_ascii_case("meta") {
                continue;
            }
            let mut path = parse_path(key)?;
            if path.attr.urn.is_some() {
                return Err(ScimError::invalid_path(format!(
                    "\"{}\" inside {} must be a plain attribute name",
                    abbreviate(key),
                    extension.id
                )));
            }
            path.attr.urn = Some(extension.id.clone());
            self.apply_path(root, kind, &path, Some(value))?;
        }
        Ok(())
    }

    /// Finds the schema definitions a path names; unknown attributes are 400 `invalidPath`.
    fn resolve(&self, path: &PatchPath) -> Result<Target<'s>, ScimError> {
        let unknown = || ScimError::invalid_path(format!("unknown attribute \"{}\"", path.attr));
        let name = &path.attr.name;
        let found = match &path.attr.urn {
            None => self.find_unqualified(name)?,
            Some(urn) => match self.schema.schema(urn) {
                Some(schema) => match self.as_extension(schema) {
                    Some(extension) => extension.attribute(name).map(|a| (Some(extension), a)),
                    // `urn:…:core:2.0:User:userName` is plain `userName`.
                    None => self.schema.find(None, name, None).map(|a| (None, a)),
                },
                None => return self.resolve_whole_extension(path).ok_or_else(unknown),
            },
        };
        let (extension, attr) = found.ok_or_else(unknown)?;
        let sub = match (&path.attr.sub, &path.sub) {
            (Some(_), Some(_)) => return Err(unknown()),
            (Some(sub), None) | (None, Some(sub)) => Some(
                attr.sub(sub)
                    .filter(|_| attr.ty == AttrType::Complex)
                    .ok_or_else(|| ScimError::invalid_path(format!("unknown attribute \"{}.{sub}\"", attr.name)))?,
            ),
            (None, None) => None,
        };
        let filter = match &path.filter {
            None => None,
            Some(_) if !attr.multi_valued => {
                return Err(ScimError::invalid_path(format!(
                    "{} is single-valued, so a value filter cannot select from it",
                    attr.name
                )));
            }
            Some(filter) => Some(self.checked_filter(extension, attr, filter)?),
        };
        Ok(Target::Attribute(AttrTarget { schema: self.schema, extension, attr, sub, filter }))
    }

    /// An unqualified name is a core or common attribute (RFC 7644 §3.10) or, failing that, the
    /// attribute of the one extension that defines it: Entra's tutorial sends `"path":"manager"`.
    fn find_unqualified(&self, name: &str) -> Result<Option<Located<'s>>, ScimError> {
        if let Some(attr) = self.schema.find(None, name, None) {
            return Ok(Some((None, attr)));
        }
        let mut defining = self.schema.extensions.iter().filter_map(|e| Some((e, e.attribute(name)?)));
        match (defining.next(), defining.next()) {
            (Some((extension, attr)), None) => Ok(Some((Some(extension), attr))),
            (Some(_), Some(_)) => Err(ScimError::invalid_path(format!(
                "\"{name}\" is defined by several extensions: qualify it with its schema URN"
            ))),
            _ => Ok(None),
        }
    }

    /// `urn:…:enterprise:2.0:User` parses as attribute `User` of schema `urn:…:enterprise:2.0`;
    /// this recognises it as the whole extension.
    fn resolve_whole_extension(&self, path: &PatchPath) -> Option<Target<'s>> {
        let AttrPath { urn: Some(urn), name, sub: None } = &path.attr else {
            return None;
        };
        if path.filter.is_some() || path.sub.is_some() {
            return None;
        }
        let schema = self.schema.schema(&format!("{urn}:{name}"))?;
        self.as_extension(schema).map(Target::Extension)
    }

    /// `schema` if it is one of the extensions rather than the core schema.
    fn as_extension(&self, schema: &'s Schema) -> Option<&'s Schema> {
        (!schema.id.eq_ignore_ascii_case(&self.schema.core.id)).then_some(schema)
    }

    /// Checks a value filter against the schema (unknown sub-attributes, operators that do not
    /// fit) and returns it as a filter over the whole resource, ready for [`Filter::matches`].
    fn checked_filter(
        &self,
        extension: Option<&Schema>,
        attr: &Attribute,
        filter: &Filter,
    ) -> Result<Filter, ScimError> {
        let attr = AttrPath { urn: extension.map(|e| e.id.clone()), name: attr.name.clone(), sub: None };
        let whole = Filter::ValuePath { attr, filter: Box::new(filter.clone()) };
        whole.validate(self.schema).map_err(|e| match e.scim_type {
            Some(ScimType::InvalidFilter) => ScimError::invalid_path(e.detail),
            _ => e,
        })?;
        Ok(whole)
    }

    fn touch(&mut self, extension: &'s Schema) {
        if !self.touched.iter().any(|t| t.id == extension.id) {
            self.touched.push(extension);
        }
    }

    /// Lists a touched extension's URN in `schemas` once it holds data, and drops the object and
    /// the URN once it is emptied. An extension the resource never had is left alone, so that a
    /// no-op remove changes nothing.
    fn reconcile_schemas(&self, root: &mut Object) {
        for extension in &self.touched {
            let has_data = match get_ci(root, &extension.id) {
                None => continue,
                Some(Value::Object(data)) => !data.is_empty(),
                Some(_) => false,
            };
            if !has_data {
                remove_ci(root, &extension.id);
            }
            list_schema(root, &self.schema.core.id, &extension.id, has_data);
        }
    }
}

/// Adds `urn` to or removes it from the resource's `schemas`.
fn list_schema(root: &mut Object, core: &str, urn: &str, listed: bool) {
    let is_urn = |v: &Value| v.as_str().is_some_and(|v| v.eq_ignore_ascii_case(urn));
    let slot = entry_ci(root, "schemas");
    let mut urns = into_list(std::mem::take(slot));
    if !listed {
        urns.retain(|v| !is_urn(v));
    } else if !urns.iter().any(is_urn) {
        if urns.is_empty() {
            urns.push(Value::String(core.to_owned()));
        }
        urns.push(Value::String(urn.to_owned()));
    }
    let empty = urns.is_empty();
    *slot = Value::Array(urns);
    if empty {
        remove_ci(root, "schemas");
    }
}

/// The object holding an attribute: the resource itself for core and common attributes, or the
/// extension's object, created on demand when `create` is set.
fn container<'r>(root: &'r mut Object, extension: Option<&Schema>, create: bool) -> Option<&'r mut Object> {
    let Some(extension) = extension else {
        return Some(root);
    };
    if !create && get_ci(root, &extension.id).is_none() {
        return None;
    }
    let slot = entry_ci(root, &extension.id);
    if !slot.is_object() {
        if !create {
            return None;
        }
        *slot = Value::Object(Object::new());
    }
    slot.as_object_mut()
}

// ---------------------------------------------------------------------------------------------
// One attribute
// ---------------------------------------------------------------------------------------------

/// An operation's target inside its container object.
struct AttrTarget<'s> {
    schema: &'s ResourceSchema,
    /// The extension holding the attribute; `None` for core and common attributes.
    extension: Option<&'s Schema>,
    attr: &'s Attribute,
    /// From `name.givenName` or `emails[…].value`.
    sub: Option<&'s Attribute>,
    /// The value filter, wrapped as `attr[filter]` so that it evaluates against a resource.
    filter: Option<Filter>,
}

impl AttrTarget<'_> {
    /// `attr` or `attr.sub`, for error details.
    fn label(&self) -> String {
        match self.sub {
            Some(sub) => format!("{}.{}", self.attr.name, sub.name),
            None => self.attr.name.clone(),
        }
    }

    /// readOnly attributes cannot be targeted at all (RFC 7644 §3.5.2).
    fn check_writable(&self) -> Result<(), ScimError> {
        let read_only = std::iter::once(self.attr).chain(self.sub).any(|a| a.mutability == Mutability::ReadOnly);
        if read_only {
            return Err(ScimError::mutability(format!("{} is readOnly", self.label())));
        }
        Ok(())
    }

    fn apply(&self, c: &mut Object, kind: OpKind, value: Option<&Value>) -> Result<(), ScimError> {
        // An immutable attribute may be set while unassigned, never changed (RFC 7644 §3.5.2).
        let before = (self.attr.mutability == Mutability::Immutable).then(|| get_ci(c, &self.attr.name).cloned());
        if self.attr.multi_valued && (self.filter.is_some() || self.sub.is_some()) {
            with_list(c, self.attr, |list| self.apply_to_elements(list, kind, value))?;
        } else if let Some(sub) = self.sub {
            self.apply_to_sub(c, sub, kind, value)?;
        } else {
            self.apply_to_attribute(c, kind, value)?;
        }
        match before {
            Some(Some(before)) if !is_unassigned(&before) && get_ci(c, &self.attr.name) != Some(&before) => Err(
                ScimError::mutability(format!("{} is immutable: it can be set once but not changed", self.attr.name)),
            ),
            _ => Ok(()),
        }
    }

    /// A whole attribute: `userName`, `name`, `emails`, `manager`. A remove's value is
    /// meaningful only for multi-valued attributes (Entra's member removal); RFC 7644 §3.5.2.2
    /// defines none, so for single-valued ones it is ignored.
    fn apply_to_attribute(&self, c: &mut Object, kind: OpKind, value: Option<&Value>) -> Result<(), ScimError> {
        let attr = self.attr;
        let value = value.unwrap_or(&Value::Null);
        if kind == OpKind::Remove {
            // Entra removes group members with `{"op":"Remove","path":"members","value":[…]}`:
            // only the listed values go, never the whole attribute.
            if attr.multi_valued && !value.is_null() {
                return self.remove_values(c, value);
            }
            return unassign(c, attr);
        }
        match emptiness(value) {
            Emptiness::Blank => return unassign(c, attr),
            Emptiness::Hollow if kind == OpKind::Replace => return unassign(c, attr),
            Emptiness::Hollow => return Ok(()),
            Emptiness::Filled => {}
        }
        let label = &attr.name;
        if attr.multi_valued {
            let items = coerce_list(attr, value, label)?;
            return with_list(c, attr, |list| {
                let touched = match kind {
                    OpKind::Add => add_items(attr, list, items),
                    _ => {
                        *list = items;
                        (0..list.len()).collect()
                    }
                };
                demote_other_primaries(list, &touched);
                Ok(())
            });
        }
        if attr.ty != AttrType::Complex {
            set_ci(c, &attr.name, coerce_single(attr, value, label)?);
            return Ok(());
        }
        let fields = coerce_complex(attr, value, label)?;
        if is_reference(attr) {
            // A reference's sub-attributes describe one referenced resource: a new manager
            // replaces the old one whole rather than inheriting its `$ref` or `displayName`.
            let reference = fresh(fields);
            if reference.is_empty() {
                return unassign(c, attr);
            }
            set_ci(c, &attr.name, Value::Object(reference));
            return Ok(());
        }
        // Other complex attributes merge: sub-attributes not named stay (RFC 7644 §3.5.2.3).
        with_object(c, attr, |object| write_fields(object, fields, label))
    }

    /// A sub-attribute of a single-valued complex attribute: `name.givenName`.
    fn apply_to_sub(
        &self,
        c: &mut Object,
        sub: &Attribute,
        kind: OpKind,
        value: Option<&Value>,
    ) -> Result<(), ScimError> {
        let label = self.label();
        let value = match (kind, value.map(emptiness)) {
            (OpKind::Remove, _) | (_, None | Some(Emptiness::Blank)) => None,
            (OpKind::Replace, Some(Emptiness::Hollow)) => None,
            (OpKind::Add, Some(Emptiness::Hollow)) => return Ok(()),
            (_, Some(Emptiness::Filled)) => Some(coerce_value(sub, value.unwrap_or(&Value::Null), &label)?),
        };
        if value.is_none() && get_ci(c, &self.attr.name).is_none() {
            return Ok(());
        }
        with_object(c, self.attr, |object| write_field(object, sub, value, &label))
    }

    /// Elements of a multi-valued attribute selected by a filter and/or naming a sub-attribute:
    /// `emails[type eq "work"]`, `emails[type eq "work"].value`, `emails.value`.
    fn apply_to_elements(&self, list: &mut Vec<Value>, kind: OpKind, value: Option<&Value>) -> Result<(), ScimError> {
        let hits = self.select(list);
        let value = value.unwrap_or(&Value::Null);
        match (kind, emptiness(value)) {
            (OpKind::Remove, _) | (_, Emptiness::Blank) | (OpKind::Replace, Emptiness::Hollow) => {
                self.remove_elements(list, &hits)
            }
            (OpKind::Add, Emptiness::Hollow) => Ok(()),
            (_, Emptiness::Filled) => self.write_elements(list, hits, kind, value),
        }
    }

    /// Indices of the elements the filter selects; every element without a filter.
    fn select(&self, list: &[Value]) -> Vec<usize> {
        let Some(filter) = &self.filter else {
            return (0..list.len()).collect();
        };
        let selected = |(i, element)| filter.matches(&self.probe(element), self.schema).then_some(i);
        list.iter().enumerate().filter_map(selected).collect()
    }

    /// A resource holding only `element`, for evaluating the filter against it.
    fn probe(&self, element: &Value) -> Value {
        let mut probe = Object::new();
        probe.insert(self.attr.name.clone(), Value::Array(vec![element.clone()]));
        match self.extension {
            Some(extension) => {
                let mut root = Object::new();
                root.insert(extension.id.clone(), Value::Object(probe));
                Value::Object(root)
            }
            None => Value::Object(probe),
        }
    }

    fn write_elements(
        &self,
        list: &mut Vec<Value>,
        mut hits: Vec<usize>,
        kind: OpKind,
        value: &Value,
    ) -> Result<(), ScimError> {
        let label = self.label();
        match self.sub {
            Some(sub) => {
                let value = coerce_value(sub, value, &label)?;
                if hits.is_empty() {
                    hits.push(self.create(list, Object::new())?);
                }
                for &i in &hits {
                    if let Some(Value::Object(element)) = list.get_mut(i) {
                        write_field(element, sub, Some(value.clone()), &label)?;
                    }
                }
            }
            None => {
                let fields = coerce_complex(self.attr, value, &label)?;
                if hits.is_empty() {
                    let fields = fresh(fields);
                    if fields.is_empty() {
                        // Nothing but unknown or readOnly sub-attributes: no element to create.
                        return Ok(());
                    }
                    hits.push(self.create(list, fields)?);
                } else {
                    for &i in &hits {
                        let Some(Value::Object(element)) = list.get_mut(i) else {
                            continue;
                        };
                        if kind == OpKind::Replace {
                            // The replacement keeps the filter's `eq` terms unless it sets them,
                            // just as an element created from the filter would have them.
                            *element = self.seed().unwrap_or_default();
                        }
                        write_fields(element, fields.clone(), &label)?;
                    }
                }
            }
        }
        demote_other_primaries(list, &hits);
        Ok(())
    }

    /// Appends the element the filter describes plus `fields`, for a value path that matched
    /// nothing. Entra relies on this: it adds `emails[type eq "work"].value` to users without a
    /// work email. Only filters made of `eq` joined by `and` describe an element; anything else is
    /// 400 `noTarget` (RFC 7644 §3.5.2.3).
    fn create(&self, list: &mut Vec<Value>, fields: Object) -> Result<usize, ScimError> {
        let mut element = self.seed().ok_or_else(|| {
            ScimError::no_target(format!(
                "no value of {} matches the filter, and only a filter of `eq` comparisons joined \
                 by `and` can create one",
                self.attr.name
            ))
        })?;
        element.extend(fields);
        list.push(Value::Object(element));
        Ok(list.len() - 1)
    }

    /// The element a value filter of `eq` terms joined by `and` describes: `type eq "work" and
    /// primary eq "True"` gives `{"type":"work","primary":true}`.
    fn seed(&self) -> Option<Object> {
        let Some(Filter::ValuePath { filter, .. }) = &self.filter else {
            return None;
        };
        let mut seed = Object::new();
        for (path, value) in eq_terms(filter)? {
            let sub = self.attr.sub(&path.name).filter(|s| s.mutability != Mutability::ReadOnly)?;
            if value.is_null() {
                continue;
            }
            let value = coerce_single(sub, value, &sub.name).ok()?;
            match seed.get(&sub.name) {
                Some(other) if *other != value => return None,
                _ => seed.insert(sub.name.clone(), value),
            };
        }
        Some(seed)
    }

    /// Removes the selected elements, or with a sub-attribute, that sub-attribute of each.
    ///
    /// An element left with nothing but what its filter named goes too, and so does one that lost
    /// its `value` (RFC 7643 §2.4: the element's significant value). That makes remove the inverse
    /// of the creating add: `emails[type eq "work"].value` set then removed leaves no
    /// `{"type":"work"}` behind.
    fn remove_elements(&self, list: &mut Vec<Value>, hits: &[usize]) -> Result<(), ScimError> {
        let Some(sub) = self.sub else {
            remove_indices(list, hits);
            return Ok(());
        };
        let label = self.label();
        let named = self.filter.as_ref().map(filter_names).unwrap_or_default();
        let mut emptied = Vec::new();
        for &i in hits {
            let Some(Value::Object(element)) = list.get_mut(i) else {
                continue;
            };
            write_field(element, sub, None, &label)?;
            let hollow = sub.name.eq_ignore_ascii_case("value")
                || element.keys().all(|k| named.iter().any(|n| n.eq_ignore_ascii_case(k)));
            if hollow {
                emptied.push(i);
            }
        }
        remove_indices(list, &emptied);
        Ok(())
    }

    /// Removes the elements equal to the given values (Entra's remove-with-value).
    fn remove_values(&self, c: &mut Object, value: &Value) -> Result<(), ScimError> {
        let attr = self.attr;
        let given = coerce_list(attr, value, &attr.name)?;
        if get_ci(c, &attr.name).is_none() {
            return Ok(());
        }
        with_list(c, attr, |list| {
            list.retain(|element| !given.iter().any(|g| same_element(attr, element, g)));
            Ok(())
        })
    }
}

/// Appends the items not already present (RFC 7644 §3.5.2.1: an existing value is not added
/// again) and returns the indices of those appended.
fn add_items(attr: &Attribute, list: &mut Vec<Value>, items: Vec<Value>) -> Vec<usize> {
    let mut added = Vec::new();
    for item in items {
        if !list.iter().any(|existing| same_element(attr, existing, &item)) {
            list.push(item);
            added.push(list.len() - 1);
        }
    }
    added
}

/// Whether `given` denotes the existing element `existing`. Elements of a reference list
/// (`members`) are the resources they point to, so only `value` counts; otherwise every
/// sub-attribute `given` names must be equal, so `{"value":"a@b"}` denotes
/// `{"value":"a@b","type":"work"}`. Strings compare as the schema's `caseExact` says.
fn same_element(attr: &Attribute, existing: &Value, given: &Value) -> bool {
    let (Value::Object(existing), Value::Object(given)) = (existing, given) else {
        return same_scalar(Some(attr), existing, given);
    };
    let by_value = is_reference(attr) && get_ci(given, "value").is_some();
    !given.is_empty()
        && given
            .iter()
            .filter(|(key, _)| !by_value || key.eq_ignore_ascii_case("value"))
            .all(|(key, v)| get_ci(existing, key).is_some_and(|e| same_scalar(attr.sub(key), e, v)))
}

fn same_scalar(attr: Option<&Attribute>, a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(a), Value::String(b)) if !attr.is_some_and(|attr| attr.case_exact) => eq_ignore_case(a, b),
        _ => a == b,
    }
}

/// Case-insensitive equality, without allocating for the usual ASCII values.
fn eq_ignore_case(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() { a.eq_ignore_ascii_case(b) } else { a.to_lowercase() == b.to_lowercase() }
}

/// RFC 7644 §3.5.2: setting a value's `primary` to true sets it to false on the others. Of the
/// touched elements the last primary one wins.
fn demote_other_primaries(list: &mut [Value], touched: &[usize]) {
    let is_primary = |e: &Value| matches!(e.as_object().and_then(|e| get_ci(e, "primary")), Some(Value::Bool(true)));
    let Some(&winner) = touched.iter().rev().find(|&&i| list.get(i).is_some_and(is_primary)) else {
        return;
    };
    for (i, element) in list.iter_mut().enumerate() {
        if i != winner
            && is_primary(element)
            && let Value::Object(element) = element
        {
            set_ci(element, "primary", Value::Bool(false));
        }
    }
}

/// Removes the elements at `sorted` indices.
fn remove_indices(list: &mut Vec<Value>, sorted: &[usize]) {
    let mut index = 0;
    list.retain(|_| {
        let keep = sorted.binary_search(&index).is_err();
        index += 1;
        keep
    });
}

/// The `eq` comparisons of a filter made only of `eq` joined by `and`.
fn eq_terms(filter: &Filter) -> Option<Vec<(&AttrPath, &Value)>> {
    match filter {
        Filter::Compare { path, op: CompareOp::Eq, value } if path.urn.is_none() && path.sub.is_none() => {
            Some(vec![(path, value)])
        }
        Filter::And(left, right) => {
            let mut terms = eq_terms(left)?;
            terms.extend(eq_terms(right)?);
            Some(terms)
        }
        _ => None,
    }
}

/// The attribute names a filter mentions.
fn filter_names(filter: &Filter) -> Vec<String> {
    match filter {
        Filter::Compare { path, .. } | Filter::Present(path) => vec![path.name.clone()],
        Filter::And(left, right) | Filter::Or(left, right) => {
            let mut names = filter_names(left);
            names.extend(filter_names(right));
            names
        }
        Filter::Not(inner) | Filter::ValuePath { filter: inner, .. } => filter_names(inner),
    }
}

/// A list attribute's elements as an owned vector, handed to `edit` and stored back; an attribute
/// left without elements is removed, since it is unassigned (RFC 7644 §3.5.2.2).
fn with_list<T>(
    c: &mut Object,
    attr: &Attribute,
    edit: impl FnOnce(&mut Vec<Value>) -> Result<T, ScimError>,
) -> Result<T, ScimError> {
    let slot = entry_ci(c, &attr.name);
    let mut list = into_list(std::mem::take(slot));
    let outcome = edit(&mut list);
    let empty = list.is_empty();
    *slot = Value::Array(list);
    if empty {
        remove_ci(c, &attr.name);
    }
    outcome
}

/// A complex attribute's object, handed to `edit` and stored back; removed when left empty.
fn with_object<T>(
    c: &mut Object,
    attr: &Attribute,
    edit: impl FnOnce(&mut Object) -> Result<T, ScimError>,
) -> Result<T, ScimError> {
    let slot = entry_ci(c, &attr.name);
    let mut object = match std::mem::take(slot) {
        Value::Object(object) => object,
        _ => Object::new(),
    };
    let outcome = edit(&mut object);
    let empty = object.is_empty();
    *slot = Value::Object(object);
    if empty {
        remove_ci(c, &attr.name);
    }
    outcome
}

/// A stored value as a list: elements of an array, a stray single value, or nothing.
fn into_list(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// Removes an attribute, refusing when it is required (RFC 7643 §2.2).
fn unassign(c: &mut Object, attr: &Attribute) -> Result<(), ScimError> {
    ensure_not_required(c, attr)?;
    remove_ci(c, &attr.name);
    Ok(())
}

fn ensure_not_required(c: &Object, attr: &Attribute) -> Result<(), ScimError> {
    if attr.required && get_ci(c, &attr.name).is_some_and(|v| !is_unassigned(v)) {
        return Err(ScimError::invalid_value(format!("{} is required and cannot be removed", attr.name)));
    }
    Ok(())
}

/// Sets each coerced sub-attribute, or removes it where the client sent null or "".
fn write_fields(object: &mut Object, fields: Fields<'_>, parent: &str) -> Result<(), ScimError> {
    for (sub, value) in fields {
        write_field(object, sub, value, &format!("{parent}.{}", sub.name))?;
    }
    Ok(())
}

/// Sets (`Some`) or removes (`None`) one sub-attribute, enforcing its immutability.
fn write_field(object: &mut Object, sub: &Attribute, value: Option<Value>, label: &str) -> Result<(), ScimError> {
    let current = get_ci(object, &sub.name).filter(|v| !is_unassigned(v));
    if sub.mutability == Mutability::Immutable && current.is_some() && current != value.as_ref() {
        return Err(ScimError::mutability(format!("{label} is immutable: it can be set once but not changed")));
    }
    match value {
        Some(value) => set_ci(object, &sub.name, value),
        None => remove_ci(object, &sub.name),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

/// How empty a value is: `null` and `""` unassign; `[]` and `{}` hold nothing.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Emptiness {
    Blank,
    Hollow,
    Filled,
}

fn emptiness(value: &Value) -> Emptiness {
    match value {
        Value::Null => Emptiness::Blank,
        Value::String(s) if s.is_empty() => Emptiness::Blank,
        Value::Array(items) if items.is_empty() => Emptiness::Hollow,
        Value::Object(fields) if fields.is_empty() => Emptiness::Hollow,
        _ => Emptiness::Filled,
    }
}

fn is_unassigned(value: &Value) -> bool {
    emptiness(value) != Emptiness::Filled
}

/// Sub-attributes of a complex value, each with its coerced value, or `None` where the client
/// sent null or "" to unassign it.
type Fields<'a> = Vec<(&'a Attribute, Option<Value>)>;

/// The fields that are set, keyed by the schema's spelling.
fn fresh(fields: Fields<'_>) -> Object {
    fields.into_iter().filter_map(|(sub, value)| Some((sub.name.clone(), value?))).collect()
}

/// Whether a complex attribute points at another resource (`manager`, `members`): it has `$ref`.
fn is_reference(attr: &Attribute) -> bool {
    attr.ty == AttrType::Complex && attr.sub("$ref").is_some()
}

/// Checks a value against its attribute (single- or multi-valued) and coerces it.
fn coerce_value(attr: &Attribute, value: &Value, label: &str) -> Result<Value, ScimError> {
    if attr.multi_valued {
        return coerce_list(attr, value, label).map(Value::Array);
    }
    coerce_single(attr, value, label)
}

/// The elements of a multi-valued attribute's value: an array, or a single value standing for
/// one element. Null, "" and empty elements are dropped.
fn coerce_list(attr: &Attribute, value: &Value, label: &str) -> Result<Vec<Value>, ScimError> {
    let items = match value {
        Value::Array(items) => items.as_slice(),
        single => std::slice::from_ref(single),
    };
    let mut list = Vec::with_capacity(items.len());
    for item in items.iter().filter(|item| !is_unassigned(item)) {
        let item = coerce_single(attr, item, label)?;
        if !is_unassigned(&item) {
            list.push(item);
        }
    }
    Ok(list)
}

/// Checks one value against the attribute's type. The only conversions are Entra's: booleans sent
/// as `"True"`/`"False"`, and the shapes [`coerce_complex`] accepts. Strings are kept as sent.
fn coerce_single(attr: &Attribute, value: &Value, label: &str) -> Result<Value, ScimError> {
    let accepted = match (attr.ty, value) {
        (AttrType::Complex, _) => {
            return Ok(Value::Object(fresh(coerce_complex(attr, value, label)?)));
        }
        (AttrType::Boolean, Value::Bool(_)) => true,
        (AttrType::Boolean, Value::String(s)) => {
            return parse_bool(s).map(Value::Bool).ok_or_else(|| type_error(attr, label));
        }
        (AttrType::Integer, Value::Number(n)) => n.is_i64() || n.is_u64(),
        (AttrType::Decimal, Value::Number(_)) => true,
        (AttrType::String | AttrType::DateTime | AttrType::Reference | AttrType::Binary, Value::String(_)) => true,
        _ => false,
    };
    if accepted { Ok(value.clone()) } else { Err(type_error(attr, label)) }
}

/// Checks a complex value: an object, or for attributes with a `value` sub-attribute a bare
/// value (`"manager": "id"`), or a one-element array (Entra's `[{"$ref":…,"value":…}]` manager). Unknown and readOnly sub-attributes are dropped, as RFC
/// 7643 §7 says clients' readOnly values are ignored; keys take the schema's spelling.
fn coerce_complex<'a>(attr: &'a Attribute, value: &Value, label: &str) -> Result<Fields<'a>, ScimError> {
    let object = match value {
        Value::Object(object) => Cow::Borrowed(object),
        Value::Array(items) => match items.as_slice() {
            [] => return Ok(Vec::new()),
            [one] if !one.is_array() => return coerce_complex(attr, one, label),
            _ => {
                return Err(ScimError::invalid_value(format!("{label} must be one value, not a list")));
            }
        },
        Value::String(_) | Value::Number(_) | Value::Bool(_) if attr.sub("value").is_some() => {
            Cow::Owned(Object::from_iter([("value".to_owned(), value.clone())]))
        }
        _ => return Err(type_error(attr, label)),
    };
    let object = match decode_json_role(attr, &object) {
        Some(role) => Cow::Owned(role),
        None => object,
    };
    let mut fields = Vec::with_capacity(object.len());
    for (key, value) in object.iter() {
        let Some(sub) = attr.sub(key).filter(|s| s.mutability != Mutability::ReadOnly) else {
            continue;
        };
        let value = if emptiness(value) == Emptiness::Blank {
            None
        } else {
            Some(coerce_value(sub, value, &format!("{label}.{}", sub.name))?)
        };
        fields.push((sub, value));
    }
    Ok(fields)
}

/// Entra's app-role PATCH sends each role as `{"value": "{\"id\":…,\"value\":\"25\",
/// \"displayName\":\"Role1234\"}"}`: a JSON object encoded in the `value` string. It becomes
/// `{"value":"25","display":"Role1234"}`, keeping the element's `type` and `primary`. Only
/// `roles` is decoded: elsewhere a string that looks like JSON is data, stored as sent.
fn decode_json_role(attr: &Attribute, element: &Object) -> Option<Object> {
    if !attr.name.eq_ignore_ascii_case("roles") {
        return None;
    }
    let text = get_ci(element, "value")?.as_str()?;
    if !text.trim_start().starts_with('{') {
        return None;
    }
    let Ok(Value::Object(inner)) = serde_json::from_str::<Value>(text) else {
        return None;
    };
    let value = match get_ci(&inner, "value")? {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let mut role = element.clone();
    set_ci(&mut role, "value", Value::String(value));
    if let Some(Value::String(name)) = get_ci(&inner, "displayName") {
        set_ci(&mut role, "display", Value::String(name.clone()));
    }
    Some(role)
}

fn type_error(attr: &Attribute, label: &str) -> ScimError {
    let expected = match attr.ty {
        AttrType::String => "a string",
        AttrType::Boolean => "a boolean",
        AttrType::Decimal => "a number",
        AttrType::Integer => "an integer",
        AttrType::DateTime => "a dateTime string",
        AttrType::Reference => "a reference string",
        AttrType::Binary => "a base64 string",
        AttrType::Complex => "an object",
    };
    ScimError::invalid_value(format!("{label} must be {expected}"))
}

/// `"true"`/`"false"` in any case: Entra sends `"False"` to disable a user.
fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------------------
// Case-insensitive object access (RFC 7643 §2.1)
// ---------------------------------------------------------------------------------------------

fn get_ci<'m>(object: &'m Object, name: &str) -> Option<&'m Value> {
    object.get(name).or_else(|| object.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
}

/// The slot for `name`: the existing key in whatever case it is stored, or a new `null` under
/// `canonical` spelling.
fn entry_ci<'m>(object: &'m mut Object, canonical: &str) -> &'m mut Value {
    let key =
        object.keys().find(|k| k.eq_ignore_ascii_case(canonical)).cloned().unwrap_or_else(|| canonical.to_owned());
    object.entry(key).or_insert(Value::Null)
}

fn set_ci(object: &mut Object, canonical: &str, value: Value) {
    *entry_ci(object, canonical) = value;
}

/// Removes `name` in every case it is stored, keeping the order of the other keys.
fn remove_ci(object: &mut Object, name: &str) {
    object.retain(|k, _| !k.eq_ignore_ascii_case(name));
}

// ---------------------------------------------------------------------------------------------
// Membership fast path
// ---------------------------------------------------------------------------------------------

/// Splits group membership changes from the other operations when they can be applied without
/// the current member list: adds of member values, and removes by `members[value eq "id"]`
/// (or several such `eq` joined by `or`) or by Entra's value list. `None` when an operation needs
/// the list: replacing `members`, removing all members, other filters, sub-attribute paths.
///
/// Changes combine in request order, so Okta's remove-then-add of one member adds it.
pub fn membership_delta(ops: &[PatchOperation]) -> Option<MembershipDelta> {
    let mut delta = MembershipDelta::default();
    for op in ops {
        match member_change(op)? {
            MemberChange::None => delta.rest.push(op.clone()),
            MemberChange::Add(ids) => ids.into_iter().for_each(|id| delta.add_member(id)),
            MemberChange::Remove(ids) => ids.into_iter().for_each(|id| delta.remove_member(id)),
        }
    }
    Some(delta)
}

impl MembershipDelta {
    fn add_member(&mut self, id: String) {
        self.remove.retain(|r| *r != id);
        if !self.add.contains(&id) {
            self.add.push(id);
        }
    }

    fn remove_member(&mut self, id: String) {
        self.add.retain(|a| *a != id);
        if !self.remove.contains(&id) {
            self.remove.push(id);
        }
    }
}

enum MemberChange {
    None,
    Add(Vec<String>),
    Remove(Vec<String>),
}

/// What an operation does to `members`; `None` if it cannot be known without the member list.
fn member_change(op: &PatchOperation) -> Option<MemberChange> {
    let Some(path) = &op.path else {
        let names_members = op
            .value
            .as_ref()
            .and_then(Value::as_object)
            .is_some_and(|value| value.keys().any(|key| parse_patch_path(key).is_ok_and(|p| is_members(&p.attr))));
        return (!names_members).then_some(MemberChange::None);
    };
    if !is_members(&path.attr) {
        return Some(MemberChange::None);
    }
    if path.attr.sub.is_some() || path.sub.is_some() {
        return None;
    }
    match (op.op, &path.filter, &op.value) {
        (OpKind::Add, None, Some(value)) => member_ids(value).map(MemberChange::Add),
        (OpKind::Remove, Some(filter), _) => value_eq_ids(filter).map(MemberChange::Remove),
        (OpKind::Remove, None, Some(value)) if !value.is_null() => member_ids(value).map(MemberChange::Remove),
        _ => None,
    }
}

fn is_members(attr: &AttrPath) -> bool {
    attr.name.eq_ignore_ascii_case("members") && attr.urn.as_deref().is_none_or(|urn| urn.eq_ignore_ascii_case(GROUP))
}

/// The ids in a members value: `[{"value":"id",…}]`, one such object, or bare ids.
fn member_ids(value: &Value) -> Option<Vec<String>> {
    let items = match value {
        Value::Array(items) => items.as_slice(),
        single => std::slice::from_ref(single),
    };
    items
        .iter()
        .map(|item| match item {
            Value::String(id) => Some(id.clone()),
            Value::Object(member) => get_ci(member, "value")?.as_str().map(str::to_owned),
            _ => None,
        })
        // An empty id would be dropped by `apply` rather than added: leave it to the slow path.
        .map(|id| id.filter(|id| !id.is_empty()))
        .collect()
}

/// The ids of `value eq "id"`, or of several joined by `or`.
fn value_eq_ids(filter: &Filter) -> Option<Vec<String>> {
    match filter {
        Filter::Compare { path, op: CompareOp::Eq, value: Value::String(id) }
            if path.urn.is_none() && path.sub.is_none() && path.name.eq_ignore_ascii_case("value") =>
        {
            Some(vec![id.clone()])
        }
        Filter::Or(left, right) => {
            let mut ids = value_eq_ids(left)?;
            ids.extend(value_eq_ids(right)?);
            Some(ids)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
