//! SCIM operations carried out for a tenant: the protocol core decides what a request means, the
//! tenant's mapping how the app expresses it, the backend sends it, and the store remembers what the
//! app cannot (SCIM ids, `externalId`, versions).
//!
//! Writes follow one order everywhere: validate everything first, then call the app, then record in
//! the store. A failure before the app call changes nothing; a store failure after it is compensated
//! where the app allows it, and reported as 503 so the client retries.

pub mod bulk;
mod fetch;
pub mod list;
mod members;

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::backend::limit;
use crate::mapping::spec::IdFrom;
use crate::mapping::template::Context;
use crate::mapping::transform::{self, get_ci};
use crate::mapping::{ResourceKind, ResourceMapping};
use crate::scim::error::{ScimError, ScimType};
use crate::scim::path::AttrPath;
use crate::scim::{filter, list as scim_list, patch, resource};
use crate::store::{LockGuard, Record, Store, StoreError};
use crate::telemetry::personal;
use crate::tenant::Tenant;
use crate::tenant::spec::OnDuplicate;

/// What a write or read returns to the HTTP layer.
#[derive(Debug, Clone)]
pub struct Written {
    pub resource: Value,
    pub etag: String,
    pub location: String,
}

/// Shared by all tenants: the store and the public base URL used in `meta.location`.
pub struct Provisioner {
    store: Arc<dyn Store>,
    public_url: String,
}

impl Provisioner {
    /// A provisioner over `store`; `public_url` is how clients reach this gateway (no trailing `/`).
    pub fn new(store: Arc<dyn Store>, public_url: &str) -> Self {
        Self { store, public_url: public_url.trim_end_matches('/').to_owned() }
    }

    /// The SCIM base URL of a tenant.
    pub fn base_url(&self, tenant: &str) -> String {
        format!("{}/{tenant}/scim/v2", self.public_url)
    }

    /// Operations on `kind` for `tenant`; 404 when the tenant's app has no such resource.
    pub fn resource<'a>(&'a self, tenant: &'a Tenant, kind: ResourceKind) -> Result<Ops<'a>, ScimError> {
        let rm = tenant
            .resource(kind)
            .ok_or_else(|| ScimError::not_found(format!("this tenant does not provision {}s", kind.name())))?;
        Ok(Ops { p: self, tenant, kind, rm, scope: tenant.scope(kind) })
    }
}

/// The operations on one resource type of one tenant.
pub struct Ops<'a> {
    p: &'a Provisioner,
    tenant: &'a Tenant,
    kind: ResourceKind,
    rm: &'a ResourceMapping,
    /// This tenant's part of a shared app instance, if it shares one.
    scope: Option<&'a crate::tenant::scope::Scope>,
}

/// A write's lock lease, renewed while the write runs: a crashed replica's locks free themselves
/// after at most this long.
const LOCK_TTL: std::time::Duration = std::time::Duration::from_secs(10);
/// Longest a write waits for another write of the same resource or name.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// `<key> eq "<value>"` for the string value of `key` in a resource body, with the value.
fn eq_filter<'s>(scim: &'s Value, key: &str) -> Option<(&'s str, filter::Filter)> {
    let value = get_ci(scim, key).and_then(Value::as_str)?;
    let f = filter::Filter::Compare {
        path: AttrPath::new(key),
        op: filter::CompareOp::Eq,
        value: Value::String(value.to_owned()),
    };
    Some((value, f))
}

fn now() -> String {
    OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// Store failures leave the outcome unknown: the client must retry, never assume.
fn store_error(e: StoreError) -> ScimError {
    tracing::error!(error = %e, "store failure");
    ScimError::status(503, "the gateway's state store is unavailable; retry later")
        .with_retry_after(std::time::Duration::from_secs(2))
}

fn app_id_value(record: &Record) -> Result<Value, ScimError> {
    serde_json::from_str(&record.app_id).map_err(|_| ScimError::status(500, "stored app id is corrupt"))
}

/// Checks `If-Match` against the current version (RFC 7644 §3.14).
fn check_if_match(if_match: Option<&str>, record: &Record) -> Result<(), ScimError> {
    let Some(header) = if_match else { return Ok(()) };
    let current = record.etag();
    let strip = |s: &str| s.trim().trim_start_matches("W/").trim_matches('"').to_owned();
    let ok = header.split(',').any(|t| t.trim() == "*" || strip(t) == strip(&current));
    if ok {
        Ok(())
    } else {
        Err(ScimError::new(412, ScimType::InvalidVers, format!("the resource's version is {current}")))
    }
}

impl<'a> Ops<'a> {
    fn what(&self, op: &str) -> String {
        format!("{op} {}", self.kind.name())
    }

    fn location(&self, id: &str) -> String {
        let mut url = self.p.base_url(&self.tenant.id);
        for part in ["/", self.kind.endpoint(), "/", id] {
            url.push_str(part);
        }
        url
    }

    async fn record(&self, id: &str) -> Result<Record, ScimError> {
        self.p
            .store
            .get(&self.tenant.id, self.kind, id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| ScimError::not_found(format!("{} `{id}` not found", self.kind.name())))
    }

    /// The app id inside an app object, as JSON text.
    fn app_id_of(&self, obj: &Value, what: &str) -> Result<String, ScimError> {
        match self.rm.id.get(obj) {
            Some(v @ (Value::String(_) | Value::Number(_))) => Ok(v.to_string()),
            _ => Err(ScimError::status(502, format!("{what}: the application's answer has no id at `{}`", self.rm.id))),
        }
    }

    fn ctx(&self, vars: &[(&str, &Value)]) -> Context {
        let mut all = vars.to_vec();
        all.push(("credentials", &self.tenant.credentials));
        Context::new(all)
    }

    /// Reads the app object behind a record, with its `extras`.
    async fn read_app(&self, record: &Record) -> Result<Value, ScimError> {
        self.read_app_id(&app_id_value(record)?).await
    }

    /// Reads the app object with app id `id`, with its `extras`.
    async fn read_app_id(&self, id: &Value) -> Result<Value, ScimError> {
        let id = id.clone();
        let what = self.what("read");
        let resp = fetch::send(self.tenant, &self.rm.read, &self.ctx(&[("id", &id)]), &[], &what).await?;
        let mut app = self.rm.read.result_of(&resp.body).cloned().ok_or_else(|| {
            ScimError::status(
                502,
                format!("{what}: the application's answer has no object where the mapping expects it"),
            )
        })?;
        if self.scope.is_some_and(|s| !s.contains(&app)) {
            // Another tenant's object in a shared app: as absent as an id never issued.
            return Err(ScimError::not_found(format!("{} not found", self.kind.name())));
        }
        for extra in &self.rm.extras {
            let ctx = self.ctx(&[("id", &id), ("app", &app)]);
            let value = match fetch::send(self.tenant, &extra.call, &ctx, &[], &what).await {
                Ok(resp) => extra.call.result_of(&resp.body).cloned().unwrap_or(Value::Null),
                Err(e) if e.status == 404 && extra.optional => Value::Null,
                Err(e) => return Err(e),
            };
            extra.into.set(&mut app, value);
        }
        Ok(app)
    }

    /// App id → SCIM id for every reference in `apps` (adopting objects the gateway has not seen).
    async fn read_refs(&self, apps: &[&Value]) -> Result<HashMap<(ResourceKind, String), String>, ScimError> {
        let mut wanted: HashMap<ResourceKind, Vec<String>> = HashMap::new();
        for app in apps {
            for (k, id) in transform::app_references(self.rm, app) {
                wanted.entry(k).or_default().push(id);
            }
        }
        let mut out = HashMap::new();
        for (kind, mut ids) in wanted {
            ids.sort_unstable();
            ids.dedup();
            let recs = self.p.store.adopt(&self.tenant.id, kind, ids.clone(), &now()).await.map_err(store_error)?;
            out.extend(ids.into_iter().zip(recs).map(|(app_id, r)| ((kind, app_id), r.id)));
        }
        Ok(out)
    }

    /// SCIM id → app id for every reference in a SCIM resource.
    async fn write_refs(&self, scim: &Value) -> Result<HashMap<(ResourceKind, String), String>, ScimError> {
        let mut out = HashMap::new();
        for (kind, id) in transform::scim_references(self.rm, scim) {
            if let Some(r) = self.p.store.get(&self.tenant.id, kind, &id).await.map_err(store_error)? {
                out.insert((kind, id), r.app_id);
            }
        }
        Ok(out)
    }

    /// Maps a SCIM resource to its app object, or fails before anything is sent. On an `update`,
    /// absent attributes are cleared where the mapping says how (`clear`, `clear_with_null`).
    async fn to_app(&self, scim: &Value, update: bool) -> Result<Value, ScimError> {
        let refs = self.write_refs(scim).await?;
        let lookup = |k: ResourceKind, id: &str| refs.get(&(k, id.to_owned())).cloned();
        let mut app = transform::to_app(self.rm, scim, &lookup, &self.tenant.credentials, update, false)?;
        if let Some(scope) = self.scope {
            scope.mark(&mut app);
        }
        Ok(app)
    }

    /// In a shared app, reads the object first so that nothing reaches another tenant's objects
    /// (a record can name one through a reference adopted from a member list).
    async fn check_scope(&self, record: &Record) -> Result<(), ScimError> {
        if self.scope.is_some() {
            self.read_app(record).await?;
        }
        Ok(())
    }

    /// The SCIM resource for an app object and its record, with `id`, `externalId` and `meta`.
    fn resource_of(
        &self,
        record: &Record,
        app: &Value,
        refs: &HashMap<(ResourceKind, String), String>,
        members: Option<Vec<Value>>,
    ) -> Value {
        let lookup = |k: ResourceKind, id: &str| refs.get(&(k, id.to_owned())).cloned();
        let stored = if record.stored.is_empty() { Value::Null } else { Value::Object(record.stored.clone()) };
        let scim = transform::to_scim(self.rm, app, &stored, &lookup, &self.p.base_url(&self.tenant.id));
        let mut out = Map::new();
        let Value::Object(mut attrs) = scim else { return Value::Object(out) };
        out.insert("schemas".into(), attrs.remove("schemas").unwrap_or_else(|| json!([self.rm.schema.core.id])));
        out.insert("id".into(), Value::String(record.id.clone()));
        if !self.rm.external_id_in_app
            && let Some(e) = &record.external_id
        {
            out.insert("externalId".into(), Value::String(e.clone()));
        }
        out.extend(attrs);
        if let Some(m) = members
            && !m.is_empty()
        {
            out.insert("members".into(), Value::Array(m));
        }
        out.insert(
            "meta".into(),
            json!({
                "resourceType": self.kind.name(),
                "created": record.created,
                "lastModified": record.last_modified,
                "location": self.location(&record.id),
                "version": record.etag(),
            }),
        );
        Value::Object(out)
    }

    fn written(&self, record: &Record, resource: Value) -> Written {
        // `resource_of` wrote this very text into `meta.location`: taken from there, not made
        // again, unless the answer leaves `meta` out.
        let location = match resource.get("meta").and_then(|m| m.get("location")) {
            Some(Value::String(l)) => l.clone(),
            _ => self.location(&record.id),
        };
        Written { resource, etag: record.etag(), location }
    }

    /// Whether a response projected with these parameters shows `members`.
    fn wants_members(&self, attributes: &[AttrPath], excluded: &[AttrPath]) -> bool {
        let is_members = |p: &AttrPath| {
            p.name.eq_ignore_ascii_case("members")
                && p.urn.as_deref().is_none_or(|u| u.eq_ignore_ascii_case(&self.rm.schema.core.id))
        };
        self.rm.members.is_some()
            && !excluded.iter().any(|p| is_members(p) && p.sub.is_none())
            && (attributes.is_empty() || attributes.iter().any(is_members))
    }

    /// A full read: the app object, its references and (when wanted) members.
    async fn load(&self, record: &Record, with_members: bool) -> Result<(Value, Value), ScimError> {
        let app = self.read_app(record).await?;
        let refs = self.read_refs(&[&app]).await?;
        let members = if with_members { Some(self.members_of(&app_id_value(record)?).await?) } else { None };
        let scim = self.resource_of(record, &app, &refs, members);
        Ok((app, scim))
    }

    /// `GET /{Resources}/{id}`.
    pub async fn get(&self, id: &str, attributes: &[AttrPath], excluded: &[AttrPath]) -> Result<Written, ScimError> {
        let record = self.record(id).await?;
        let (_, scim) = self.load(&record, self.wants_members(attributes, excluded)).await?;
        let projected = scim_list::project(scim, &self.rm.schema, attributes, excluded);
        Ok(self.written(&record, projected))
    }

    /// `POST /{Resources}`. Like every write, one outbound-limit operation: see [`limit::operation`].
    pub async fn create(&self, body: &Value) -> Result<Written, ScimError> {
        limit::operation(self.create_unscoped(body)).await
    }

    async fn create_unscoped(&self, body: &Value) -> Result<Written, ScimError> {
        let what = self.what("create");
        let input = resource::normalize(body, &self.rm.schema)?;
        log_ignored(&input.ignored, &what);
        let scim = input.resource;
        // Where the gateway itself keeps a unique name, check-then-create must not interleave with
        // another create of that name, in this process or another replica.
        let names = self.stored_unique_names(&scim);
        let mut held = Vec::with_capacity(names.len());
        for name in &names {
            held.push(self.lock(name).await?);
        }
        self.create_checked(scim, &what).await
    }

    /// Takes the tenant's lock `name`, or answers 503 when another request holds it too long.
    async fn lock(&self, name: &str) -> Result<LockGuard, ScimError> {
        match LockGuard::acquire(&self.p.store, &self.tenant.id, name, LOCK_TTL, LOCK_WAIT).await {
            Ok(Some(guard)) => Ok(guard),
            Ok(None) => {
                Err(ScimError::status(503, format!("{}: another change to it is in progress", self.kind.name()))
                    .with_retry_after(std::time::Duration::from_secs(1)))
            }
            Err(e) => Err(store_error(e)),
        }
    }

    /// Runs a change of resource `id` alone: changes read, merge and write back, so two at once (on
    /// two replicas) would lose one.
    async fn exclusive<T>(&self, id: &str, change: impl Future<Output = Result<T, ScimError>>) -> Result<T, ScimError> {
        let _held = self.lock(&format!("res:{}:{id}", self.kind.name())).await?;
        change.await
    }

    /// Lock names for the unique attributes the gateway keeps itself, case-folded and sorted (so
    /// two creates never wait for each other in opposite orders).
    fn stored_unique_names(&self, scim: &Value) -> Vec<String> {
        let mut names: Vec<String> = self
            .rm
            .attributes
            .iter()
            .filter(|a| a.stored)
            .filter_map(|a| a.target.as_ref())
            .filter(|t| t.attribute.uniqueness != crate::scim::schema::Uniqueness::None)
            .filter_map(|t| {
                let v = transform::read_target(scim, t)?.as_str()?;
                Some(format!("create:{}:{}={}", self.kind.name(), transform::display_target(t), v.to_lowercase()))
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }

    async fn create_checked(&self, scim: Value, what: &str) -> Result<Written, ScimError> {
        let what = what.to_owned();
        let app_obj = self.to_app(&scim, false).await?;
        // Members are checked before the group exists, so a bad member id creates nothing.
        let member_ids = match (&self.rm.members, get_ci(&scim, "members")) {
            (Some(_), Some(m)) => self.member_app_ids_for(m).await?,
            _ => Vec::new(),
        };
        let external_id = get_ci(&scim, "externalId").and_then(Value::as_str).map(str::to_owned);
        if let Some(existing) = self.stored_duplicate(&scim, None).await? {
            if self.tenant.options.on_duplicate == OnDuplicate::ReturnExisting {
                return self.get(&existing.id, &[], &[]).await;
            }
            return Err(ScimError::new(
                409,
                ScimType::Uniqueness,
                format!("{what}: a {} with this name exists", self.kind.name()),
            ));
        }
        let resp = match fetch::send(
            self.tenant,
            &self.rm.create,
            &self.ctx(&[("app", &app_obj), ("scim", &scim)]),
            &[],
            &what,
        )
        .await
        {
            Err(e) if e.status == 409 && self.tenant.options.on_duplicate == OnDuplicate::ReturnExisting => {
                return self.existing_for(&scim).await?.ok_or(e);
            }
            // Where the gateway keeps the name, the app cannot tell a real duplicate from the residue
            // of a create whose replica died after the app acted (the name is free here, so that
            // is what an unrecorded object with this externalId is).
            Err(e) if e.status == 409 && self.name_is_kept() => {
                return match self.recover_create(&scim, &member_ids).await? {
                    Some(w) => Ok(w),
                    None => Err(e),
                };
            }
            // The request may have reached the app and only the answer was lost: look before failing,
            // so a retry does not create a second object.
            Err(e) if matches!(e.status, 502 | 504) => {
                return match self.recover_create(&scim, &member_ids).await? {
                    Some(w) => Ok(w),
                    None => Err(e),
                };
            }
            other => other?,
        };
        let created = self.rm.create.result_of(&resp.body).cloned().unwrap_or(Value::Null);
        let app_id = match self.rm.create.id_from {
            IdFrom::Body => self.app_id_of(&created, &what)?,
            IdFrom::Location => location_id(&resp.headers).ok_or_else(|| {
                ScimError::status(502, format!("{what}: the application's answer has no usable Location header"))
            })?,
        };
        if let Err(e) = self.complete_create(&app_id, &app_obj, &scim, &what).await {
            self.compensate_create(&app_id).await;
            return Err(e);
        }
        // A Location names the object in a URL, which does not tell "42" from 42: the object's own
        // id field does, so the id is taken from it when the app has one.
        let (app_id, created) = match self.rm.create.id_from {
            IdFrom::Location => {
                let provisional: Value = serde_json::from_str(&app_id).map_err(|_| ScimError::status(500, "bad id"))?;
                let obj = self.read_app_id(&provisional).await?;
                (self.app_id_of(&obj, &what).unwrap_or(app_id), obj)
            }
            IdFrom::Body => (app_id, created),
        };
        let ts = now();
        let record = Record {
            id: uuid::Uuid::new_v4().to_string(),
            app_id: app_id.clone(),
            external_id,
            created: ts.clone(),
            last_modified: ts,
            version: 1,
            stored: transform::stored_values(self.rm, &scim),
        };
        let record = match self.record_new(record).await {
            Ok(r) => r,
            Err(e) => {
                self.compensate_create(&app_id).await;
                return Err(store_error(e));
            }
        };
        let app_id_v = app_id_value(&record)?;
        let mut added = Vec::new();
        for m in &member_ids {
            if let Err(e) = self.add_member(&app_id_v, m).await {
                // Leave nothing half-made: the group goes again, and the client sees why.
                self.compensate_create(&app_id).await;
                let _ = self.p.store.delete(&self.tenant.id, self.kind, &record.id).await;
                return Err(e);
            }
            added.push(m.clone());
        }
        let app_view = if (self.rm.after_create.is_empty() || self.rm.create.id_from == IdFrom::Location)
            && created.is_object()
            && created.as_object().is_some_and(|o| o.len() > 1)
        {
            created
        } else {
            self.read_app(&record).await?
        };
        let refs = self.read_refs(&[&app_view]).await?;
        let members = if self.rm.members.is_some() { Some(self.member_entries(added).await?) } else { None };
        let res = self.resource_of(&record, &app_view, &refs, members);
        Ok(self.written(&record, res))
    }

    /// Runs the calls that complete a create (`create[1..]`), with the new object's `id`.
    async fn complete_create(&self, app_id: &str, app: &Value, scim: &Value, what: &str) -> Result<(), ScimError> {
        if self.rm.after_create.is_empty() {
            return Ok(());
        }
        let id: Value = serde_json::from_str(app_id).map_err(|_| ScimError::status(500, "app id is not JSON"))?;
        let ctx = self.ctx(&[("id", &id), ("app", app), ("scim", scim)]);
        for call in &self.rm.after_create {
            let go = call
                .applies(&ctx)
                .map_err(|e| ScimError::status(500, format!("{what}: `when` failed: {}", e.message)))?;
            if go {
                fetch::send(self.tenant, call, &ctx, &[], what).await?;
            }
        }
        Ok(())
    }

    /// After a create whose answer was lost: the object the app holds under this resource's unique
    /// name, if the store has never seen it, is the one just created: it is recorded and answered.
    /// One the store knows is a real duplicate.
    async fn recover_create(&self, scim: &Value, member_ids: &[String]) -> Result<Option<Written>, ScimError> {
        let Some((value, f)) = self.app_identity_filter(scim) else { return Ok(None) };
        let what = self.what("create");
        let found = self.unadopted_matches(&f).await?;
        let [app] = found.as_slice() else { return Ok(None) };
        let app_id = self.app_id_of(app, &what)?;
        if self.p.store.by_app_id(&self.tenant.id, self.kind, &app_id).await.map_err(store_error)?.is_some() {
            return Err(ScimError::new(409, ScimType::Uniqueness, format!("{what}: `{value}` already exists")));
        }
        tracing::warn!(tenant = %self.tenant.id, "create answer lost; found the created object and recorded it");
        let ts = now();
        let record = Record {
            id: uuid::Uuid::new_v4().to_string(),
            app_id,
            external_id: get_ci(scim, "externalId").and_then(Value::as_str).map(str::to_owned),
            created: ts.clone(),
            last_modified: ts,
            version: 1,
            stored: transform::stored_values(self.rm, scim),
        };
        let record = self.record_new(record).await.map_err(store_error)?;
        let group_id = app_id_value(&record)?;
        // The create may have been cut off before its completing calls: they are made now.
        self.complete_create(&record.app_id, &self.to_app(scim, false).await?, scim, &what).await?;
        for m in member_ids {
            self.add_member(&group_id, m).await?;
        }
        let refs = self.read_refs(&[app]).await?;
        let members = if self.rm.members.is_some() { Some(self.members_of(&group_id).await?) } else { None };
        let res = self.resource_of(&record, app, &refs, members);
        Ok(Some(self.written(&record, res)))
    }

    /// Records the record of an app object this create made. A record already holding the object
    /// can only come from a list that adopted it in between (another request or replica): it is
    /// this create's object, so it keeps the id the list gave it and gains what the create knows
    /// (externalId, gateway-kept attributes).
    async fn record_new(&self, record: Record) -> Result<Record, crate::store::StoreError> {
        match self.p.store.put(&self.tenant.id, self.kind, record.clone()).await? {
            None => Ok(record),
            Some(holder) => {
                let adopted = Record { id: holder.id, created: holder.created, version: holder.version, ..record };
                // Under the holder's own id, this write cannot meet another holder.
                self.p.store.put(&self.tenant.id, self.kind, adopted.clone()).await?;
                Ok(adopted)
            }
        }
    }

    /// The resource already holding a unique attribute the gateway keeps (a stored `userName`): the
    /// app cannot enforce uniqueness for what it does not hold, so the gateway does.
    async fn stored_duplicate(&self, scim: &Value, except: Option<&str>) -> Result<Option<Record>, ScimError> {
        for a in self.rm.attributes.iter().filter(|a| a.stored) {
            let Some(t) = &a.target else { continue };
            if t.attribute.uniqueness == crate::scim::schema::Uniqueness::None {
                continue;
            }
            let Some(v) = transform::read_target(scim, t).and_then(Value::as_str) else { continue };
            let path = transform::display_target(t);
            if let Some(r) = self.p.store.by_stored(&self.tenant.id, self.kind, &path, v).await.map_err(store_error)?
                && Some(r.id.as_str()) != except
            {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    /// Removes an app object whose record could not be written (best effort, logged).
    async fn compensate_create(&self, app_id: &str) {
        let Ok(id) = serde_json::from_str::<Value>(app_id) else { return };
        let what = self.what("undo create");
        if let Err(e) = fetch::send(self.tenant, &self.rm.delete, &self.ctx(&[("id", &id)]), &[], &what).await {
            tracing::error!(tenant = %self.tenant.id, app_id = %personal(app_id), error = %personal(&e), "could not undo an app create; the object stays in the app");
        }
    }

    /// `userName eq "<value>"` (or `displayName` for groups) for a resource body, with the value.
    fn unique_name_filter<'s>(&self, scim: &'s Value) -> Option<(&'s str, filter::Filter)> {
        eq_filter(scim, self.kind.unique_name())
    }

    /// Whether the gateway keeps this resource type's unique name itself (`stored: true`).
    fn name_is_kept(&self) -> bool {
        let name = self.kind.unique_name();
        self.rm.attributes.iter().any(|a| {
            a.stored && a.target.as_ref().is_some_and(|t| transform::display_target(t).eq_ignore_ascii_case(name))
        })
    }

    /// `eq` on what names a resource in the app: its unique name, or its `externalId` where the
    /// gateway keeps the name itself (the app then holds no other identity of it).
    fn app_identity_filter<'s>(&self, scim: &'s Value) -> Option<(&'s str, filter::Filter)> {
        eq_filter(scim, if self.name_is_kept() { "externalId" } else { self.kind.unique_name() })
    }

    /// The existing resource a duplicate create collided with (for `on_duplicate: return_existing`).
    async fn existing_for(&self, scim: &Value) -> Result<Option<Written>, ScimError> {
        let Some((_, f)) = self.unique_name_filter(scim) else { return Ok(None) };
        let found = self.find(&f).await?;
        Ok(found.into_iter().next().map(|(record, resource)| self.written(&record, resource)))
    }

    /// `PUT /{Resources}/{id}`.
    pub async fn replace(&self, id: &str, body: &Value, if_match: Option<&str>) -> Result<Written, ScimError> {
        limit::operation(self.exclusive(id, self.replace_unscoped(id, body, if_match))).await
    }

    async fn replace_unscoped(&self, id: &str, body: &Value, if_match: Option<&str>) -> Result<Written, ScimError> {
        let what = self.what("replace");
        let record = self.record(id).await?;
        check_if_match(if_match, &record)?;
        let input = resource::normalize(body, &self.rm.schema)?;
        log_ignored(&input.ignored, &what);
        let (record, app_view) = self.write(record, input.resource, true, None, &what).await?;
        self.respond(&record, &app_view).await
    }

    /// `PATCH /{Resources}/{id}`: `None` means 204 (groups, whose bodies can be large).
    pub async fn patch(&self, id: &str, body: &Value, if_match: Option<&str>) -> Result<Option<Written>, ScimError> {
        limit::operation(self.exclusive(id, self.patch_unscoped(id, body, if_match))).await
    }

    async fn patch_unscoped(
        &self,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<Option<Written>, ScimError> {
        let what = self.what("patch");
        let ops = patch::parse_request(body)?;
        let record = self.record(id).await?;
        check_if_match(if_match, &record)?;
        let ops = self.drop_unmapped(ops);
        let is_group = self.kind == ResourceKind::Group;
        if self.rm.members.is_some()
            && let Some(delta) = patch::membership_delta(&ops)
            && delta.rest.is_empty()
        {
            // Membership-only change: no need to read a group with thousands of members.
            self.check_scope(&record).await?;
            self.apply_member_delta(&record, &delta.add, &delta.remove).await?;
            self.touch(record).await?;
            return Ok(None);
        }
        let touches_members = self.rm.members.is_some() && ops.iter().any(op_touches_members);
        let (current_app, current) = self.load(&record, touches_members).await?;
        let mut next = current.clone();
        patch::apply(&mut next, &ops, &self.rm.schema)?;
        if next == current {
            return Ok(if is_group { None } else { Some(self.written(&record, current)) });
        }
        let (record, app_view) =
            self.write(record, strip_meta(next), touches_members, Some(current_app), &what).await?;
        if is_group {
            return Ok(None);
        }
        Ok(Some(self.respond(&record, &app_view).await?))
    }

    /// The response for a resource after a write.
    async fn respond(&self, record: &Record, app_view: &Value) -> Result<Written, ScimError> {
        let refs = self.read_refs(&[app_view]).await?;
        let members = match &self.rm.members {
            Some(_) => Some(self.members_of(&app_id_value(record)?).await?),
            None => None,
        };
        let res = self.resource_of(record, app_view, &refs, members);
        Ok(self.written(record, res))
    }

    /// Writes a whole new SCIM state of an existing resource to the app, then the store. Returns the
    /// new record and the app object as the app now holds it. `current` is the app object before
    /// the change, when the caller already has it.
    async fn write(
        &self,
        record: Record,
        scim: Value,
        set_members: bool,
        current: Option<Value>,
        what: &str,
    ) -> Result<(Record, Value), ScimError> {
        if self.rm.update.is_empty() {
            return Err(ScimError::new(
                400,
                ScimType::Mutability,
                format!("{what}: the application cannot update a {}", self.kind.name()),
            ));
        }
        if self.stored_duplicate(&scim, Some(&record.id)).await?.is_some() {
            return Err(ScimError::new(
                409,
                ScimType::Uniqueness,
                format!("{what}: another {} has this name", self.kind.name()),
            ));
        }
        let app_obj = self.to_app(&scim, true).await?;
        let desired_members = match (&self.rm.members, set_members) {
            (Some(_), true) => Some(match get_ci(&scim, "members") {
                Some(m) => self.member_app_ids_for(m).await?,
                None => Vec::new(),
            }),
            _ => None,
        };
        let id = app_id_value(&record)?;
        let current = match current {
            Some(c) => c,
            None if self.rm.update_reads_current || self.scope.is_some() => self.read_app(&record).await?,
            None => Value::Null,
        };
        let ctx = self.ctx(&[("id", &id), ("app", &app_obj), ("scim", &scim), ("current", &current)]);
        let mut answered = None;
        for call in &self.rm.update {
            let go = call.applies(&ctx).map_err(|e| {
                ScimError::status(
                    500,
                    format!("{what}: mapping `{}`: `when` failed: {}", self.tenant.mapping.name, e.message),
                )
            })?;
            if go {
                answered = Some((call, fetch::send(self.tenant, call, &ctx, &[], what).await?));
            }
        }
        if let Some(desired) = desired_members {
            self.set_members(&id, desired).await?;
        }
        let mut record = record;
        record.version += 1;
        record.last_modified = now();
        record.external_id = get_ci(&scim, "externalId").and_then(Value::as_str).map(str::to_owned);
        record.stored = transform::stored_values(self.rm, &scim);
        self.p.store.put(&self.tenant.id, self.kind, record.clone()).await.map_err(store_error)?;
        // One call answering the whole object is the truth; otherwise (204, partial objects, several
        // calls) the object is read again.
        let single = self.rm.update.len() == 1;
        let app_view = match answered.as_ref().and_then(|(call, resp)| call.result_of(&resp.body)) {
            Some(v) if single && v.is_object() && self.app_id_of(v, what).is_ok() => v.clone(),
            _ => self.read_app(&record).await?,
        };
        Ok((record, app_view))
    }

    /// Records a change that did not go through `write` (membership-only PATCH).
    async fn touch(&self, mut record: Record) -> Result<(), ScimError> {
        record.version += 1;
        record.last_modified = now();
        self.p.store.put(&self.tenant.id, self.kind, record).await.map_err(store_error)?;
        Ok(())
    }

    /// `DELETE /{Resources}/{id}`.
    pub async fn delete(&self, id: &str, if_match: Option<&str>) -> Result<(), ScimError> {
        limit::operation(self.exclusive(id, self.delete_unscoped(id, if_match))).await
    }

    async fn delete_unscoped(&self, id: &str, if_match: Option<&str>) -> Result<(), ScimError> {
        let what = self.what("delete");
        let record = self.record(id).await?;
        check_if_match(if_match, &record)?;
        match self.check_scope(&record).await {
            // Gone from the app, or never this tenant's: forget the id, touch nothing in the app.
            Err(e) if e.status == 404 => {
                return self.p.store.delete(&self.tenant.id, self.kind, &record.id).await.map_err(store_error);
            }
            other => other?,
        }
        let app_id = app_id_value(&record)?;
        match fetch::send(self.tenant, &self.rm.delete, &self.ctx(&[("id", &app_id)]), &[], &what).await {
            // Already gone in the app: the delete's goal holds.
            Err(e) if e.status == 404 => {}
            other => {
                other?;
            }
        }
        self.p.store.delete(&self.tenant.id, self.kind, &record.id).await.map_err(store_error)
    }

    /// Drops PATCH operations on standard attributes (or sub-attributes) this tenant's app does not
    /// hold: Entra sends its whole attribute mapping (`name.formatted`, `roles`, …), and failing on
    /// what the app cannot store would stall provisioning for nothing. Names no SCIM schema knows
    /// still fail in `patch::apply`.
    fn drop_unmapped(&self, ops: Vec<patch::PatchOperation>) -> Vec<patch::PatchOperation> {
        ops.into_iter()
            .filter_map(|mut op| {
                match &op.path {
                    Some(p) => {
                        let sub = p.attr.sub.as_deref().or(p.sub.as_deref());
                        if self.unheld(p.attr.urn.as_deref(), &p.attr.name, sub) {
                            tracing::debug!(path = %p.attr, "ignoring PATCH of an attribute the app does not hold");
                            return None;
                        }
                    }
                    None => {
                        if let Some(Value::Object(map)) = &mut op.value {
                            map.retain(|k, _| match filter::parse_attr_path(k) {
                                Ok(p) => !self.unheld(p.urn.as_deref(), &p.name, p.sub.as_deref()),
                                Err(_) => true,
                            });
                            if map.is_empty() {
                                return None;
                            }
                        }
                    }
                }
                Some(op)
            })
            .collect()
    }

    /// Whether a path names a standard attribute (or sub-attribute) the tenant's schema leaves out.
    fn unheld(&self, urn: Option<&str>, name: &str, sub: Option<&str>) -> bool {
        let urn = urn.filter(|u| !u.eq_ignore_ascii_case(&self.rm.schema.core.id));
        let full = self.kind.full_schema();
        // A bare extension URN as a path names the whole extension, which is handled by `apply`.
        if full.find(urn, name, sub).is_none() {
            return false;
        }
        self.rm.schema.find(urn, name, sub).is_none()
    }
}

/// The id in a `Location` header: its last path segment, percent-decoded, as JSON text (digits as
/// a number, anything else as a string).
fn location_id(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let raw = headers.get(reqwest::header::LOCATION)?.to_str().ok()?;
    let path = raw.split(['?', '#']).next()?.trim_end_matches('/');
    let segment = path.rsplit('/').next().filter(|s| !s.is_empty())?;
    let decoded = percent_encoding::percent_decode_str(segment).decode_utf8().ok()?;
    Some(if decoded.bytes().all(|b| b.is_ascii_digit()) && decoded.len() < 19 {
        decoded.into_owned()
    } else {
        Value::String(decoded.into_owned()).to_string()
    })
}

fn op_touches_members(op: &patch::PatchOperation) -> bool {
    match &op.path {
        Some(p) => p.attr.name.eq_ignore_ascii_case("members"),
        None => op.value.as_ref().and_then(|v| get_ci(v, "members")).is_some(),
    }
}

fn strip_meta(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("meta");
        o.remove("id");
    }
    v
}

fn log_ignored(ignored: &[String], what: &str) {
    if !ignored.is_empty() {
        tracing::debug!(op = what, attributes = ?ignored, "ignored attributes the app does not hold");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_location_headers() {
        let h = |v: &str| {
            let mut m = reqwest::header::HeaderMap::new();
            m.insert(reqwest::header::LOCATION, v.parse().unwrap());
            m
        };
        assert_eq!(location_id(&h("/users/4")).as_deref(), Some("4"));
        assert_eq!(location_id(&h("http://h/3.1/users/0a1b2c/")).as_deref(), Some("\"0a1b2c\""));
        assert_eq!(location_id(&h("http://h/3.1/lists/eng.example.com?x=1")).as_deref(), Some("\"eng.example.com\""));
        assert_eq!(location_id(&h("/u/%40alice%3Aserver")).as_deref(), Some("\"@alice:server\""));
        assert_eq!(location_id(&reqwest::header::HeaderMap::new()), None);
    }
}
