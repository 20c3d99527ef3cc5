//! The team collection, its search indexes and memberships.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use super::index::Index;
use crate::error::{Error, Result};
use crate::model::{Member, Team, TeamInput, fold};
use crate::page::{PageRequest, Paging};
use crate::time::Timestamp;

/// First id handed out.
const FIRST_ID: u64 = 501;

/// Exact-match filters of `GET /teams`; all given ones must match.
#[derive(Debug, Clone, Default)]
pub struct TeamFilter {
    /// Case-insensitive.
    pub name: Option<String>,
    /// Exact.
    pub ext_ref: Option<String>,
}

/// Teams by id, plus indexes for search, uniqueness and cascades.
#[derive(Debug)]
pub struct Teams {
    by_id: BTreeMap<u64, Team>,
    next_id: u64,
    /// Folded name → id (at most one).
    name: Index<String>,
    ext_ref: Index<String>,
    /// Account id → teams it belongs to, so deleting an account is cheap.
    teams_of: Index<u64>,
}

impl Default for Teams {
    fn default() -> Self {
        Self {
            by_id: BTreeMap::new(),
            next_id: FIRST_ID,
            name: Index::default(),
            ext_ref: Index::default(),
            teams_of: Index::default(),
        }
    }
}

impl Teams {
    /// The team with `id`, or `not_found`.
    pub fn get(&self, id: u64) -> Result<&Team> {
        self.by_id.get(&id).ok_or_else(|| Error::not_found("team", id))
    }

    /// Creates an empty team with the next id.
    pub fn create(&mut self, input: TeamInput, now: Timestamp) -> Result<&Team> {
        self.validate(&input, None)?;
        let id = self.next_id;
        self.next_id += 1;
        let team = Team::new(id, input, now);
        self.name.insert(fold(&team.name), id);
        if let Some(ext_ref) = &team.ext_ref {
            self.ext_ref.insert(ext_ref.clone(), id);
        }
        Ok(self.by_id.entry(id).or_insert(team))
    }

    /// Replaces name, ext_ref and description; members are kept.
    pub fn replace(&mut self, id: u64, input: TeamInput, now: Timestamp) -> Result<&Team> {
        self.validate(&input, Some(id))?;
        let team = self.by_id.get_mut(&id).ok_or_else(|| Error::not_found("team", id))?;
        self.name.remove(&fold(&team.name), id);
        if let Some(ext_ref) = &team.ext_ref {
            self.ext_ref.remove(ext_ref, id);
        }
        self.name.insert(fold(&input.name), id);
        if let Some(ext_ref) = &input.ext_ref {
            self.ext_ref.insert(ext_ref.clone(), id);
        }
        team.name = input.name;
        team.ext_ref = input.ext_ref;
        team.description = input.description;
        team.updated_at = now;
        Ok(team)
    }

    /// Deletes a team and its memberships.
    pub fn remove(&mut self, id: u64) -> Result<Team> {
        let team = self.by_id.remove(&id).ok_or_else(|| Error::not_found("team", id))?;
        self.name.remove(&fold(&team.name), id);
        if let Some(ext_ref) = &team.ext_ref {
            self.ext_ref.remove(ext_ref, id);
        }
        for account_id in team.members.keys() {
            self.teams_of.remove(account_id, id);
        }
        Ok(team)
    }

    /// One page of teams matching `filter`, by ascending id.
    pub fn list(&self, filter: &TeamFilter, page: PageRequest) -> (Vec<&Team>, Paging) {
        let mut filters = Vec::new();
        if let Some(name) = &filter.name {
            filters.push(self.name.get(&fold(name)));
        }
        if let Some(ext_ref) = &filter.ext_ref {
            filters.push(self.ext_ref.get(ext_ref));
        }
        super::list(&self.by_id, &filters, page)
    }

    /// One page of a team's members, by ascending account id.
    pub fn members(&self, id: u64, page: PageRequest) -> Result<(Vec<Member>, Paging)> {
        let members = &self.get(id)?.members;
        let iter = members.iter().map(|(&account_id, &added_at)| Member { account_id, added_at });
        Ok(page.apply(iter, members.len()))
    }

    /// Adds a member in O(log n); the caller checks the account exists.
    pub(super) fn add_member(&mut self, team_id: u64, account_id: u64, now: Timestamp) -> Result<Member> {
        let team = self.by_id.get_mut(&team_id).ok_or_else(|| Error::not_found("team", team_id))?;
        match team.members.entry(account_id) {
            Entry::Occupied(_) => Err(Error::AlreadyMember { team_id, account_id }),
            Entry::Vacant(slot) => {
                slot.insert(now);
                team.updated_at = now;
                self.teams_of.insert(account_id, team_id);
                Ok(Member { account_id, added_at: now })
            }
        }
    }

    /// Removes a member in O(log n).
    pub fn remove_member(&mut self, team_id: u64, account_id: u64, now: Timestamp) -> Result<()> {
        let team = self.by_id.get_mut(&team_id).ok_or_else(|| Error::not_found("team", team_id))?;
        if team.members.remove(&account_id).is_none() {
            return Err(Error::NotFound(format!("account {account_id} is not a member of team {team_id}")));
        }
        team.updated_at = now;
        self.teams_of.remove(&account_id, team_id);
        Ok(())
    }

    /// Drops a deleted account from every team it belonged to.
    pub(super) fn remove_account(&mut self, account_id: u64, now: Timestamp) {
        for team_id in self.teams_of.take(&account_id) {
            if let Some(team) = self.by_id.get_mut(&team_id) {
                team.members.remove(&account_id);
                team.updated_at = now;
            }
        }
    }

    /// Checks name uniqueness; `id` is the team being replaced, if any.
    fn validate(&self, input: &TeamInput, id: Option<u64>) -> Result<()> {
        let name_taken = self.name.get(&fold(&input.name)).iter().any(|&holder| Some(holder) != id);
        if name_taken {
            return Err(Error::Duplicate(format!("team name '{}' is already taken", input.name)));
        }
        Ok(())
    }
}
