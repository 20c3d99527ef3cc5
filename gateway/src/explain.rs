//! `scimbridge explain`: the app calls a SCIM request would cause, rendered from the tenant's
//! mapping without sending anything. What needs the store or the app (the app id behind a SCIM id,
//! the current state) appears as a named placeholder, and credentials always do, so the output can
//! be shared.

use serde_json::{Map, Value, json};

use crate::mapping::call::{AppRequest, Call};
use crate::mapping::template::Context;
use crate::mapping::{ResourceKind, ResourceMapping, transform};
use crate::provision::list::{Plan, plan};
use crate::scim::error::ScimError;
use crate::scim::list::ListQuery;
use crate::scim::{patch, resource};
use crate::tenant::Tenant;

/// One step of an explanation: what happens, and the request it sends, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub what: String,
    pub request: Option<AppRequest>,
}

fn note(what: impl Into<String>) -> Step {
    Step { what: what.into(), request: None }
}

struct Explainer<'a> {
    tenant: &'a Tenant,
    rm: &'a ResourceMapping,
    /// `credentials.*` replaced by placeholders.
    credentials: Value,
}

impl Explainer<'_> {
    fn render(&self, call: &Call, what: &str, vars: &[(&str, &Value)]) -> Result<Step, ScimError> {
        let mut all = vars.to_vec();
        all.push(("credentials", &self.credentials));
        let req = call
            .render(&Context::new(all), &self.tenant.mapping.headers, &[])
            .map_err(|e| ScimError::status(500, format!("{what}: {}", e.message)))?;
        Ok(Step { what: what.to_owned(), request: Some(req) })
    }

    fn app_id(&self, scim_id: &str) -> Value {
        Value::String(format!("<app id of {} {scim_id}>", self.rm.kind.name()))
    }

    fn to_app(&self, scim: &Value, partial: bool) -> Result<Value, ScimError> {
        let refs =
            |k: ResourceKind, id: &str| Some(Value::String(format!("<app id of {} {id}>", k.name())).to_string());
        transform::to_app(self.rm, scim, &refs, &self.credentials, false, partial)
    }

    fn read(&self, id: &str, steps: &mut Vec<Step>) -> Result<(), ScimError> {
        let app_id = self.app_id(id);
        steps.push(note(format!("store: SCIM id `{id}` → the app id")));
        steps.push(self.render(&self.rm.read, "read", &[("id", &app_id)])?);
        for e in &self.rm.extras {
            steps.push(self.render(&e.call, &format!("read extra into `{}`", e.into), &[("id", &app_id)])?);
        }
        Ok(())
    }

    fn update(&self, id: &str, scim: &Value, partial: bool, steps: &mut Vec<Step>) -> Result<(), ScimError> {
        if self.rm.update.is_empty() {
            steps.push(note("the mapping has no update calls: the request fails with 400 mutability"));
            return Ok(());
        }
        let app = self.to_app(scim, partial)?;
        let app_id = self.app_id(id);
        let current = Value::String("<the current app object>".into());
        for (i, call) in self.rm.update.iter().enumerate() {
            let what = match &call.when {
                Some(w) => format!("update {} (only when `{}`)", i + 1, w.source()),
                None => format!("update {}", i + 1),
            };
            steps.push(self.render(
                call,
                &what,
                &[("id", &app_id), ("app", &app), ("scim", scim), ("current", &current)],
            )?);
        }
        Ok(())
    }

    fn list(&self, query: &str, steps: &mut Vec<Step>) -> Result<(), ScimError> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        let q = ListQuery::from_query(&pairs, self.tenant.options.max_results)?;
        if let Some(f) = &q.filter {
            f.validate(&self.rm.schema)?;
        }
        let page = |offset: usize| -> Result<Step, ScimError> {
            let (o, l) = (json!(offset), json!(self.rm.list.paging.max_page_size));
            let p = json!(offset / self.rm.list.paging.max_page_size + 1);
            self.render(&self.rm.list.call, "list page", &[("offset", &o), ("limit", &l), ("page", &p)])
        };
        match plan(self.rm, q.filter.as_ref(), q.sort_by.is_some()) {
            Plan::Page => steps.push(page(q.start_index.saturating_sub(1))?),
            Plan::ById(id) => self.read(id, steps)?,
            Plan::ByStored(path, v) => {
                steps.push(note(format!("store: `{path}` = `{v}` (kept by the gateway) → the resource, then read it")));
            }
            Plan::ByExternalId(e) => {
                steps.push(note(format!("store: externalId `{e}` → the resource, then read it")));
            }
            Plan::Search(s, v) => {
                let value = Value::String(v.to_owned());
                let step = match &s.lookup {
                    Some(call) => self.render(call, "look up", &[("value", &value)])?,
                    None => {
                        let mut step = page(0)?;
                        let ctx = Context::new([("value", &value), ("credentials", &self.credentials)]);
                        if let Some(req) = &mut step.request {
                            for (k, t) in &s.query {
                                let rendered = t.render(&ctx, crate::mapping::template::Escape::None);
                                req.query.push((k.clone(), rendered.map_err(|e| ScimError::status(500, e.message))?));
                            }
                        }
                        step.what = "search (the app's own filter, pushed down)".into();
                        step
                    }
                };
                steps.push(step);
            }
            Plan::Scan => {
                steps.push(page(0)?);
                steps.push(note(format!(
                    "…further pages, up to {} objects (the tenant's max_scan), filtered by the gateway",
                    self.tenant.options.max_scan
                )));
            }
        }
        if self.rm.list.reread {
            steps.push(note("each listed object is read again (the list form is partial)"));
        }
        Ok(())
    }
}

/// Explains `method path` (relative to the tenant's SCIM base, with any query) with `body`.
pub fn explain(tenant: &Tenant, method: &str, target: &str, body: Option<&Value>) -> Result<Vec<Step>, ScimError> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut segments = path.trim_matches('/').split('/');
    let endpoint = segments.next().unwrap_or_default();
    let id = segments.next();
    let kind = ResourceKind::from_endpoint(endpoint)
        .ok_or_else(|| ScimError::not_found(format!("`/{endpoint}` is not a resource endpoint")))?;
    let rm = tenant
        .resource(kind)
        .ok_or_else(|| ScimError::not_found(format!("this tenant does not provision {}s", kind.name())))?;
    let credentials = match &tenant.credentials {
        Value::Object(m) => Value::Object(m.keys().map(|k| (k.clone(), json!(format!("<credentials.{k}>")))).collect()),
        _ => Value::Object(Map::new()),
    };
    let ex = Explainer { tenant, rm, credentials };
    let need_body = || body.ok_or_else(|| ScimError::invalid_syntax("this request needs a body"));
    let mut steps = Vec::new();
    match (method.to_ascii_uppercase().as_str(), id) {
        ("GET", None) => ex.list(query, &mut steps)?,
        ("GET", Some(id)) => ex.read(id, &mut steps)?,
        ("POST", None) => {
            let scim = resource::normalize(need_body()?, &rm.schema)?.resource;
            let app = ex.to_app(&scim, false)?;
            steps.push(ex.render(&rm.create, "create", &[("app", &app), ("scim", &scim)])?);
            let new_id = Value::String("<the new app id>".into());
            for (i, call) in rm.after_create.iter().enumerate() {
                let what = match &call.when {
                    Some(w) => format!("complete create {} (only when `{}`)", i + 1, w.source()),
                    None => format!("complete create {}", i + 1),
                };
                steps.push(ex.render(call, &what, &[("id", &new_id), ("app", &app), ("scim", &scim)])?);
            }
            steps.push(note("store: record the new SCIM id ↔ app id"));
            if rm.members.is_some() && scim.get("members").is_some() {
                steps.push(note("then one members.add call per member"));
            }
        }
        ("PUT", Some(id)) => {
            let scim = resource::normalize(need_body()?, &rm.schema)?.resource;
            ex.update(id, &scim, false, &mut steps)?;
        }
        ("PATCH", Some(id)) => {
            let ops = patch::parse_request(need_body()?)?;
            if let (Some(m), Some(delta)) = (&rm.members, patch::membership_delta(&ops))
                && delta.rest.is_empty()
            {
                let group = ex.app_id(id);
                let member =
                    |scim_id: &String| Value::String(format!("<app id of {} {scim_id}>", m.member_kind.name()));
                match (&m.add, &m.remove, &m.set) {
                    (Some(add), Some(remove), _) => {
                        for (call, ids, what) in
                            [(add, &delta.add, "add member"), (remove, &delta.remove, "remove member")]
                        {
                            for scim_id in ids {
                                steps.push(ex.render(
                                    call,
                                    what,
                                    &[("id", &group), ("member_id", &member(scim_id))],
                                )?);
                            }
                        }
                    }
                    (_, _, Some(set)) => {
                        steps.push(note("list the current members, apply the change"));
                        let ids = Value::Array(vec![Value::String("<the resulting member ids>".into())]);
                        steps.push(ex.render(set, "set members", &[("id", &group), ("member_ids", &ids)])?);
                    }
                    _ => {}
                }
            } else {
                ex.read(id, &mut steps)?;
                steps.push(note(
                    "apply the PATCH operations to the current resource; the update carries its other values too",
                ));
                let mut scim = json!({"schemas": [rm.schema.core.id]});
                let _ = patch::apply(&mut scim, &ops, &rm.schema);
                ex.update(id, &scim, true, &mut steps)?;
            }
        }
        ("DELETE", Some(id)) => {
            steps.push(note(format!("store: SCIM id `{id}` → the app id")));
            steps.push(ex.render(&rm.delete, "delete", &[("id", &ex.app_id(id))])?);
        }
        (m, _) => return Err(ScimError::status(405, format!("{m} {target} is not a SCIM operation"))),
    }
    Ok(steps)
}
