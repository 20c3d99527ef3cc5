//! Lists and filters: choosing how to answer a query without scanning a tenant's data.
//!
//! In order of preference: `id eq` is answered from the store; an `eq` the mapping can push down by
//! the app's own search; `externalId eq` without such a search from the store's index; a plain page
//! is the app's page. Only what none of these cover is answered by examining the app's objects,
//! bounded by the tenant's `max_scan` (beyond it: 400 `tooMany`). Every candidate is checked against the full filter
//! afterwards, so push-down may be looser than SCIM (case, extra conditions) but never wrong.

use serde_json::Value;

use super::fetch::{self, Paging, Window};
use super::{Ops, now, store_error};
use crate::mapping::ResourceMapping;
use crate::mapping::compile::Search;
use crate::mapping::template::StrTemplate;
use crate::scim::error::{ScimError, ScimType};
use crate::scim::filter::{CompareOp, Filter};
use crate::scim::list::{self as scim_list, ListQuery};
use crate::store::Record;

/// How a query will be answered.
#[derive(Debug)]
pub enum Plan<'a> {
    /// A plain page of the app's list.
    Page,
    ById(&'a str),
    /// An attribute the gateway keeps (`stored`), by its path, from the store's index.
    ByStored(String, &'a str),
    ByExternalId(&'a str),
    Search(&'a Search, &'a str),
    Scan,
}

/// The terms of a conjunction (`a and b and c`).
fn conjuncts(f: &Filter) -> Vec<&Filter> {
    match f {
        Filter::And(a, b) => {
            let mut v = conjuncts(a);
            v.extend(conjuncts(b));
            v
        }
        other => vec![other],
    }
}

fn eq_string(f: &Filter) -> Option<(&crate::scim::path::AttrPath, &str)> {
    match f {
        Filter::Compare { path, op: CompareOp::Eq, value: Value::String(s) } => Some((path, s.as_str())),
        _ => None,
    }
}

fn same(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
        (None, None) => true,
        _ => false,
    }
}

fn core_urn<'u>(rm: &ResourceMapping, urn: Option<&'u str>) -> Option<&'u str> {
    urn.filter(|u| !u.eq_ignore_ascii_case(&rm.schema.core.id))
}

/// How the query with `filter` (and a sort, when `sorted`) will be answered, by the mapping alone.
pub fn plan<'a>(rm: &'a ResourceMapping, filter: Option<&'a Filter>, sorted: bool) -> Plan<'a> {
    let Some(f) = filter else { return if sorted { Plan::Scan } else { Plan::Page } };
    let terms = conjuncts(f);
    let plain = |name: &str| {
        terms.iter().find_map(|t| {
            let (p, v) = eq_string(t)?;
            (p.sub.is_none() && core_urn(rm, p.urn.as_deref()).is_none() && p.name.eq_ignore_ascii_case(name))
                .then_some(v)
        })
    };
    if let Some(id) = plain("id") {
        return Plan::ById(id);
    }
    for a in rm.attributes.iter().filter(|a| a.stored) {
        let Some(t) = &a.target else { continue };
        if !t.select.is_empty() {
            continue;
        }
        let hit = terms.iter().find_map(|term| {
            let (p, v) = eq_string(term)?;
            let sub = p.sub.as_deref();
            (same(core_urn(rm, p.urn.as_deref()), t.urn.as_deref())
                && p.name.eq_ignore_ascii_case(&t.name)
                && same(sub, t.sub.as_deref()))
            .then_some(v)
        });
        if let Some(v) = hit {
            return Plan::ByStored(crate::mapping::transform::display_target(t), v);
        }
    }
    // The app's own search is authoritative; the store's externalId index covers apps that
    // cannot search it (or do not hold it at all).
    for t in &terms {
        if let Some((s, v)) = pushable(rm, t) {
            return Plan::Search(s, v);
        }
    }
    if let Some(e) = plain("externalId") {
        return Plan::ByExternalId(e);
    }
    Plan::Scan
}

/// A search the app can run for this term, and the value to search for.
fn pushable<'a>(rm: &'a ResourceMapping, t: &'a Filter) -> Option<(&'a Search, &'a str)> {
    let find = |urn: Option<&str>, name: &str, sub: Option<&str>| {
        rm.list.search.iter().find(|s| {
            same(s.urn.as_deref(), core_urn(rm, urn))
                && s.name.eq_ignore_ascii_case(name)
                && same(s.sub.as_deref(), sub)
        })
    };
    if let Some((p, v)) = eq_string(t) {
        return find(p.urn.as_deref(), &p.name, p.sub.as_deref()).map(|s| (s, v));
    }
    if let Filter::ValuePath { attr, filter } = t {
        for inner in conjuncts(filter) {
            if let Some((p, v)) = eq_string(inner)
                && p.urn.is_none()
                && p.sub.is_none()
                && let Some(s) = find(attr.urn.as_deref(), &attr.name, Some(&p.name))
            {
                return Some((s, v));
            }
        }
    }
    None
}

impl<'a> Ops<'a> {
    fn paging(&self) -> Paging<'a> {
        let l = &self.rm.list;
        let scope_query = self.scope.map_or(&[][..], |s| &s.query[..]);
        Paging { call: &l.call, items: &l.items, total: l.total.as_ref(), paging: &l.paging, scope_query }
    }

    async fn list_window(
        &self,
        extra: &[(String, StrTemplate)],
        value: Option<&str>,
        offset: usize,
        want: usize,
    ) -> Result<Window, ScimError> {
        let v = value.map(|s| Value::String(s.to_owned())).unwrap_or(Value::Null);
        let what = self.what("list");
        let mut w = fetch::window(
            self.tenant,
            &self.paging(),
            &[("value", &v), ("credentials", &self.tenant.credentials)],
            extra,
            offset,
            want,
            &what,
        )
        .await?;
        // Other tenants' objects are never seen, whether or not the app filtered them out itself.
        if let Some(scope) = self.scope {
            w.items.retain(|app| scope.contains(app));
        }
        Ok(w)
    }

    /// A looked-up object, if it is one and this tenant's.
    fn scoped<'v>(&self, found: Option<&'v Value>) -> Option<&'v Value> {
        found.filter(|o| o.is_object() && self.scope.is_none_or(|s| s.contains(o)))
    }

    /// Records for listed app objects, adopting those the gateway has not seen; objects whose list
    /// form is partial are read again (one gone in between is left out).
    async fn records_for(&self, apps: Vec<Value>) -> Result<Vec<(Record, Value)>, ScimError> {
        let what = self.what("list");
        let ids = apps.iter().map(|a| self.app_id_of(a, &what)).collect::<Result<Vec<_>, _>>()?;
        let records = self.p.store.adopt(&self.tenant.id, self.kind, ids, &now()).await.map_err(store_error)?;
        if !self.rm.list.reread {
            return Ok(records.into_iter().zip(apps).collect());
        }
        let mut out = Vec::with_capacity(records.len());
        for record in records {
            match self.read_app(&record).await {
                Ok(app) => out.push((record, app)),
                Err(e) if e.status == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// One stored record and its app object, or nothing when either is gone.
    async fn single(&self, record: Option<Record>) -> Result<Vec<(Record, Value)>, ScimError> {
        let Some(record) = record else { return Ok(Vec::new()) };
        match self.read_app(&record).await {
            Ok(app) => Ok(vec![(record, app)]),
            Err(e) if e.status == 404 => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Every app object a bounded scan or search yields.
    async fn bounded(&self, extra: &[(String, StrTemplate)], value: Option<&str>) -> Result<Vec<Value>, ScimError> {
        let max = self.tenant.options.max_scan;
        let w = self.list_window(extra, value, 0, max.saturating_add(1)).await?;
        if w.items.len() > max {
            return Err(ScimError::new(
                400,
                ScimType::TooMany,
                format!(
                    "this filter needs more than {max} objects examined; filter on an attribute the app can search"
                ),
            ));
        }
        Ok(w.items)
    }

    /// SCIM resources for candidates, with members when wanted.
    async fn resources(
        &self,
        candidates: Vec<(Record, Value)>,
        with_members: bool,
    ) -> Result<Vec<(Record, Value)>, ScimError> {
        let apps: Vec<&Value> = candidates.iter().map(|(_, a)| a).collect();
        let refs = self.read_refs(&apps).await?;
        let mut out = Vec::with_capacity(candidates.len());
        for (record, app) in candidates {
            let members =
                if with_members { Some(self.members_of(&super::app_id_value(&record)?).await?) } else { None };
            let r = self.resource_of(&record, &app, &refs, members);
            out.push((record, r));
        }
        Ok(out)
    }

    /// App objects matching `f`, without adopting them: for deciding whether an object the store
    /// does not know yet exists in the app (a create whose answer was lost).
    pub(super) async fn unadopted_matches(&self, f: &Filter) -> Result<Vec<Value>, ScimError> {
        let apps = match plan(self.rm, Some(f), false) {
            Plan::Search(Search { lookup: Some(call), .. }, v) => {
                let value = Value::String(v.to_owned());
                match fetch::send(self.tenant, call, &self.ctx(&[("value", &value)]), &[], &self.what("look up")).await
                {
                    Ok(resp) => self.scoped(call.result_of(&resp.body)).cloned().into_iter().collect(),
                    Err(e) if e.status == 404 => Vec::new(),
                    Err(e) => return Err(e),
                }
            }
            Plan::Search(s, v) => self.bounded(&s.query, Some(v)).await?,
            _ => self.bounded(&[], None).await?,
        };
        let none = |_: crate::mapping::ResourceKind, _: &str| None;
        let base = self.p.base_url(&self.tenant.id);
        Ok(apps
            .into_iter()
            .filter(|app| {
                f.matches(
                    &crate::mapping::transform::to_scim(self.rm, app, &Value::Null, &none, &base),
                    &self.rm.schema,
                )
            })
            .collect())
    }

    /// The resources matching `f` (unpaged), for internal lookups.
    pub(super) async fn find(&self, f: &Filter) -> Result<Vec<(Record, Value)>, ScimError> {
        let candidates = self.candidates(plan(self.rm, Some(f), false)).await?;
        let with_members = filter_mentions_members(f);
        let all = self.resources(candidates, with_members).await?;
        Ok(all.into_iter().filter(|(_, r)| f.matches(r, &self.rm.schema)).collect())
    }

    async fn candidates(&self, plan: Plan<'_>) -> Result<Vec<(Record, Value)>, ScimError> {
        match plan {
            Plan::ById(id) => {
                let r = self.p.store.get(&self.tenant.id, self.kind, id).await.map_err(store_error)?;
                self.single(r).await
            }
            Plan::ByExternalId(e) => {
                let r = self.p.store.by_external_id(&self.tenant.id, self.kind, e).await.map_err(store_error)?;
                self.single(r).await
            }
            Plan::ByStored(path, v) => {
                let r = self.p.store.by_stored(&self.tenant.id, self.kind, &path, v).await.map_err(store_error)?;
                self.single(r).await
            }
            Plan::Search(Search { lookup: Some(call), .. }, v) => {
                let value = Value::String(v.to_owned());
                let what = self.what("look up");
                match fetch::send(self.tenant, call, &self.ctx(&[("value", &value)]), &[], &what).await {
                    Ok(resp) => match self.scoped(call.result_of(&resp.body)) {
                        Some(obj) => self.records_for(vec![obj.clone()]).await,
                        None => Ok(Vec::new()),
                    },
                    Err(e) if e.status == 404 => Ok(Vec::new()),
                    Err(e) => Err(e),
                }
            }
            Plan::Search(s, v) => {
                let apps = self.bounded(&s.query, Some(v)).await?;
                self.records_for(apps).await
            }
            Plan::Scan | Plan::Page => {
                let apps = self.bounded(&[], None).await?;
                self.records_for(apps).await
            }
        }
    }

    /// `GET /{Resources}` and `POST /{Resources}/.search`.
    pub async fn list(&self, q: &ListQuery) -> Result<Value, ScimError> {
        if let Some(f) = &q.filter {
            f.validate(&self.rm.schema)?;
        }
        let max = self.tenant.options.max_results;
        let count = q.count.unwrap_or(max).min(max);
        let with_members = self.wants_members(&q.attributes, &q.excluded_attributes)
            || q.filter.as_ref().is_some_and(filter_mentions_members);
        let project = |r: Value| scim_list::project(r, &self.rm.schema, &q.attributes, &q.excluded_attributes);
        let mut chosen = plan(self.rm, q.filter.as_ref(), q.sort_by.is_some());
        if matches!(chosen, Plan::Page) && self.scope.is_some_and(|s| s.query.is_empty()) {
            // The app's pages hold other tenants' objects too: only a bounded scan counts right.
            chosen = Plan::Scan;
        }
        if let Plan::Page = chosen {
            let offset = q.start_index.saturating_sub(1);
            let w = self.list_window(&[], None, offset, count.max(1)).await?;
            let total = match w.total {
                Some(t) => t,
                None if !w.more => offset + w.items.len(),
                // The app reports no total: count, within the scan bound (beyond it, a lower bound).
                None => {
                    let max = self.tenant.options.max_scan;
                    self.list_window(&[], None, 0, max).await?.items.len().max(offset + w.items.len() + 1)
                }
            };
            let mut items = w.items;
            items.truncate(count);
            let page = self.resources(self.records_for(items).await?, with_members).await?;
            let resources = page.into_iter().map(|(_, r)| project(r)).collect();
            return Ok(scim_list::list_response(resources, total, q.start_index));
        }
        let candidates = self.candidates(chosen).await?;
        let mut matched: Vec<Value> = self
            .resources(candidates, with_members)
            .await?
            .into_iter()
            .map(|(_, r)| r)
            .filter(|r| q.filter.as_ref().is_none_or(|f| f.matches(r, &self.rm.schema)))
            .collect();
        if let Some(by) = &q.sort_by {
            scim_list::sort(&mut matched, by, q.sort_order, &self.rm.schema);
        }
        let total = matched.len();
        let range = q.page(total, count);
        let resources = matched.drain(range).map(project).collect();
        Ok(scim_list::list_response(resources, total, q.start_index))
    }
}

fn filter_mentions_members(f: &Filter) -> bool {
    match f {
        Filter::Compare { path, .. } | Filter::Present(path) => path.name.eq_ignore_ascii_case("members"),
        Filter::ValuePath { attr, .. } => attr.name.eq_ignore_ascii_case("members"),
        Filter::And(a, b) | Filter::Or(a, b) => filter_mentions_members(a) || filter_mentions_members(b),
        Filter::Not(a) => filter_mentions_members(a),
    }
}
