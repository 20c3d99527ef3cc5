//! Group membership through the app's member calls: listing, adding, removing and setting.
//!
//! Members are addressed by SCIM id on the SCIM side and by app id in the app; the store translates.
//! Adds and removes are made idempotent (a mapping lists the app's "already a member" and "not a
//! member" answers under `ok_statuses`), so a retried PATCH converges instead of failing.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::fetch::{self, Paging};
use super::{Ops, app_id_value, now, store_error};
use crate::mapping::template::Context;
use crate::mapping::{MemberId, MembersMapping};
use crate::scim::error::ScimError;
use crate::store::Record;

/// The most members one group may have through the gateway; beyond it a read fails (rather than
/// work on a partial list) so memory stays bounded.
const MAX_MEMBERS: usize = 200_000;

impl Ops<'_> {
    fn members_mapping(&self) -> Result<&MembersMapping, ScimError> {
        self.rm.members.as_ref().ok_or_else(|| ScimError::invalid_path("this application keeps no group members"))
    }

    /// A group's member-list entries with each member's app id (JSON text).
    async fn member_list(&self, group_id: &Value) -> Result<Vec<(String, Value)>, ScimError> {
        let m = self.members_mapping()?;
        let paging =
            Paging { call: &m.list, items: &m.items, total: m.total.as_ref(), paging: &m.paging, scope_query: &[] };
        let what = self.what("list members of");
        let credentials = &self.tenant.credentials;
        let w = fetch::window(
            self.tenant,
            &paging,
            &[("id", group_id), ("credentials", credentials)],
            &[],
            0,
            MAX_MEMBERS + 1,
            &what,
        )
        .await?;
        if w.items.len() > MAX_MEMBERS {
            return Err(ScimError::new(
                400,
                crate::scim::error::ScimType::TooMany,
                format!("{what}: the group has more than {MAX_MEMBERS} members"),
            ));
        }
        let skipped = |entry: &Value| {
            m.skip.as_ref().is_some_and(|s| matches!(s.eval(&Context::new([("entry", entry)])), Ok(Value::Bool(true))))
        };
        w.items
            .into_iter()
            .filter(|entry| !skipped(entry))
            .map(|entry| {
                let id = match &m.member_id {
                    MemberId::Entry => Some(entry.clone()),
                    MemberId::Pointer(p) => p.get(&entry).cloned(),
                    MemberId::Expr(e) => e.eval(&Context::new([("entry", &entry)])).ok(),
                };
                match id {
                    Some(v @ (Value::String(_) | Value::Number(_))) => Ok((v.to_string(), entry)),
                    _ => Err(ScimError::status(502, format!("{what}: a member entry has no id"))),
                }
            })
            .collect()
    }

    /// App ids (JSON text) of a group's members.
    async fn member_app_ids(&self, group_id: &Value) -> Result<Vec<String>, ScimError> {
        Ok(self.member_list(group_id).await?.into_iter().map(|(id, _)| id).collect())
    }

    /// SCIM member entries for app ids.
    pub(super) async fn member_entries(&self, app_ids: Vec<String>) -> Result<Vec<Value>, ScimError> {
        let m = self.members_mapping()?;
        if app_ids.is_empty() {
            return Ok(Vec::new());
        }
        let records = self.p.store.adopt(&self.tenant.id, m.member_kind, app_ids, &now()).await.map_err(store_error)?;
        let base = self.p.base_url(&self.tenant.id);
        Ok(records
            .into_iter()
            .map(|r| {
                json!({
                    "value": r.id,
                    "$ref": format!("{base}/{}/{}", m.member_kind.endpoint(), r.id),
                    "type": m.member_kind.name(),
                })
            })
            .collect())
    }

    /// A group's members as SCIM entries.
    pub(super) async fn members_of(&self, group_id: &Value) -> Result<Vec<Value>, ScimError> {
        let ids = self.member_app_ids(group_id).await?;
        self.member_entries(ids).await
    }

    /// App ids for the SCIM `members` value of a request; unknown ids fail before any change.
    pub(super) async fn member_app_ids_for(&self, members: &Value) -> Result<Vec<String>, ScimError> {
        let m = self.members_mapping()?;
        let entries: Vec<&Value> = match members {
            Value::Array(a) => a.iter().collect(),
            Value::Null => Vec::new(),
            single => vec![single],
        };
        let mut ids = Vec::with_capacity(entries.len());
        for e in entries {
            if let Some(t) = e.get("type").and_then(Value::as_str)
                && !t.eq_ignore_ascii_case(m.member_kind.name())
            {
                return Err(ScimError::invalid_value(format!(
                    "members of type `{t}` are not supported: this application's groups hold {}s",
                    m.member_kind.name()
                )));
            }
            let id = e
                .get("value")
                .and_then(Value::as_str)
                .ok_or_else(|| ScimError::invalid_value("each member needs a string `value` (the member's id)"))?;
            ids.push(self.member_app_id(id).await?);
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    async fn member_app_id(&self, scim_id: &str) -> Result<String, ScimError> {
        let m = self.members_mapping()?;
        self.p
            .store
            .get(&self.tenant.id, m.member_kind, scim_id)
            .await
            .map_err(store_error)?
            .map(|r| r.app_id)
            .ok_or_else(|| {
                ScimError::invalid_value(format!("member `{scim_id}`: no {} with this id", m.member_kind.name()))
            })
    }

    /// One add or remove. Removes that need the member's list entry look it up first (absent: the
    /// member is already gone). Answers listed in `verify_on` are judged by the member list.
    async fn member_call(&self, add: bool, group_id: &Value, member_app_id: &str) -> Result<(), ScimError> {
        let m = self.members_mapping()?;
        let member: Value =
            serde_json::from_str(member_app_id).map_err(|_| ScimError::status(500, "stored app id is corrupt"))?;
        let (call, what) = if add { (&m.add, "add member to") } else { (&m.remove, "remove member from") };
        let Some(call) = call else {
            // Only whole-set replacement: the current set with this one change.
            let mut set: BTreeSet<String> = self.member_app_ids(group_id).await?.into_iter().collect();
            if add {
                set.insert(member_app_id.to_owned())
            } else {
                set.remove(member_app_id)
            };
            return self.replace_members(group_id, &set).await;
        };
        let what = self.what(what);
        let entry = if !add && m.remove_uses_entry {
            match self.member_list(group_id).await?.into_iter().find(|(id, _)| id == member_app_id) {
                Some((_, entry)) => entry,
                None => return Ok(()),
            }
        } else {
            Value::Null
        };
        let ctx = self.ctx(&[("id", group_id), ("member_id", &member), ("entry", &entry)]);
        let resp = fetch::send_raw(self.tenant, call, &ctx, &[], &what).await?;
        if fetch::succeeded(call, resp.status) {
            return Ok(());
        }
        if m.verify_on.contains(&resp.status) {
            let present = self.member_app_ids(group_id).await?.iter().any(|id| id == member_app_id);
            if present == add {
                return Ok(());
            }
        }
        Err(self.tenant.mapping.errors.translate(resp.status, &resp.body, &what))
    }

    /// Adds one member (app id) to a group.
    pub(super) async fn add_member(&self, group_id: &Value, member_app_id: &str) -> Result<(), ScimError> {
        self.member_call(true, group_id, member_app_id).await
    }

    /// Applies a membership-only PATCH: adds and removes by SCIM id.
    pub(super) async fn apply_member_delta(
        &self,
        record: &Record,
        add: &[String],
        remove: &[String],
    ) -> Result<(), ScimError> {
        let group_id = app_id_value(record)?;
        let mut to_add = Vec::with_capacity(add.len());
        for id in add {
            to_add.push(self.member_app_id(id).await?);
        }
        let m = self.members_mapping()?;
        let mut to_remove = Vec::with_capacity(remove.len());
        for id in remove {
            // A member the gateway never knew cannot be in the group through it: nothing to do.
            if let Some(r) = self.p.store.get(&self.tenant.id, m.member_kind, id).await.map_err(store_error)? {
                to_remove.push(r.app_id);
            }
        }
        if m.add.is_none() || m.remove.is_none() {
            // Whole-set replacement: one call with the resulting set.
            let mut set: BTreeSet<String> = self.member_app_ids(&group_id).await?.into_iter().collect();
            set.extend(to_add);
            for r in &to_remove {
                set.remove(r);
            }
            return self.replace_members(&group_id, &set).await;
        }
        for a in &to_add {
            self.member_call(true, &group_id, a).await?;
        }
        for r in &to_remove {
            self.member_call(false, &group_id, r).await?;
        }
        Ok(())
    }

    /// Replaces a group's whole membership with `members` (app ids) through the `set` call.
    async fn replace_members(&self, group_id: &Value, members: &BTreeSet<String>) -> Result<(), ScimError> {
        let m = self.members_mapping()?;
        let call = m.set.as_ref().ok_or_else(|| ScimError::status(500, "the mapping has no members.set call"))?;
        let ids = members
            .iter()
            .map(|id| serde_json::from_str::<Value>(id))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| ScimError::status(500, "stored app id is corrupt"))?;
        let member_ids = Value::Array(ids);
        let what = self.what("set members of");
        fetch::send(self.tenant, call, &self.ctx(&[("id", group_id), ("member_ids", &member_ids)]), &[], &what).await?;
        Ok(())
    }

    /// Makes the group's members exactly `desired` (app ids).
    pub(super) async fn set_members(&self, group_id: &Value, desired: Vec<String>) -> Result<(), ScimError> {
        let desired: BTreeSet<String> = desired.into_iter().collect();
        if self.members_mapping()?.set.is_some() {
            return self.replace_members(group_id, &desired).await;
        }
        let current: BTreeSet<String> = self.member_app_ids(group_id).await?.into_iter().collect();
        for a in desired.difference(&current) {
            self.member_call(true, group_id, a).await?;
        }
        for r in current.difference(&desired) {
            self.member_call(false, group_id, r).await?;
        }
        Ok(())
    }
}
