//! In-memory state: accounts, teams and memberships with their indexes.
//!
//! The store is synchronous; the HTTP layer wraps it in a single `RwLock`.
//! Operations spanning both collections (cascading deletes, adding members)
//! live here so the collections stay consistent with each other.

mod accounts;
mod index;
mod teams;

use std::collections::{BTreeMap, BTreeSet};

pub use accounts::{AccountFilter, Accounts};
pub use teams::{TeamFilter, Teams};

use crate::error::{Error, Result};
use crate::model::Member;
use crate::page::{PageRequest, Paging};
use crate::time::Timestamp;

/// All of the app's data.
#[derive(Debug, Default)]
pub struct Store {
    pub accounts: Accounts,
    pub teams: Teams,
}

impl Store {
    /// Deletes an account, its memberships, and its reports' `manager_id`.
    pub fn delete_account(&mut self, id: u64, now: Timestamp) -> Result<()> {
        self.accounts.remove(id, now)?;
        self.teams.remove_account(id, now);
        Ok(())
    }

    /// Makes a team's members exactly `account_ids` (all must exist); keeps the join time of those
    /// who stay.
    pub fn set_members(&mut self, team_id: u64, account_ids: &[u64], now: Timestamp) -> Result<()> {
        self.teams.get(team_id)?;
        if let Some(missing) = account_ids.iter().find(|id| !self.accounts.contains(**id)) {
            return Err(Error::invalid(format!(
                "field 'account_ids' references account {missing}, which does not exist"
            )));
        }
        let wanted: BTreeSet<u64> = account_ids.iter().copied().collect();
        let (current, _) = self.teams.members(team_id, crate::page::PageRequest { offset: 0, limit: usize::MAX })?;
        for m in current.iter().filter(|m| !wanted.contains(&m.account_id)) {
            self.teams.remove_member(team_id, m.account_id, now)?;
        }
        let present: BTreeSet<u64> = current.iter().map(|m| m.account_id).collect();
        for id in wanted.difference(&present) {
            self.teams.add_member(team_id, *id, now)?;
        }
        Ok(())
    }

    /// Adds an existing account to an existing team.
    pub fn add_member(&mut self, team_id: u64, account_id: u64, now: Timestamp) -> Result<Member> {
        self.teams.get(team_id)?;
        if !self.accounts.contains(account_id) {
            return Err(Error::invalid(format!(
                "field 'account_id' references account {account_id}, which does not exist"
            )));
        }
        self.teams.add_member(team_id, account_id, now)
    }
}

/// Pages through `by_id`, restricted to ids found in every set of `filters`
/// (all items when there are none).
fn list<'a, T>(by_id: &'a BTreeMap<u64, T>, filters: &[&BTreeSet<u64>], page: PageRequest) -> (Vec<&'a T>, Paging) {
    if filters.is_empty() {
        return page.apply(by_id.values(), by_id.len());
    }
    let ids = index::intersect(filters);
    page.apply(ids.iter().filter_map(|id| by_id.get(id)), ids.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AccountInput, TeamInput};

    const ALL: PageRequest = PageRequest { offset: 0, limit: 1000 };

    fn store_with(accounts: &[&str], teams: &[&str]) -> Store {
        let mut store = Store::default();
        let now = Timestamp::from_millis(1);
        for login in accounts {
            let input = AccountInput { login: (*login).into(), ..AccountInput::default() };
            assert!(store.accounts.create(input, now).is_ok());
        }
        for name in teams {
            let input = TeamInput { name: (*name).into(), ..TeamInput::default() };
            assert!(store.teams.create(input, now).is_ok());
        }
        store
    }

    fn member_ids(store: &Store, team_id: u64) -> Vec<u64> {
        store
            .teams
            .members(team_id, ALL)
            .map(|(members, _)| members.iter().map(|m| m.account_id).collect())
            .unwrap_or_default()
    }

    #[test]
    fn add_member_checks_team_then_account_then_duplicates() {
        let mut store = store_with(&["a"], &["t"]);
        let now = Timestamp::from_millis(2);
        assert!(matches!(store.add_member(999, 1001, now), Err(Error::NotFound(_))));
        assert!(matches!(store.add_member(501, 999, now), Err(Error::Invalid(_))));
        assert!(store.add_member(501, 1001, now).is_ok());
        assert_eq!(store.add_member(501, 1001, now), Err(Error::AlreadyMember { team_id: 501, account_id: 1001 }));
    }

    #[test]
    fn deleting_an_account_cascades_to_its_teams_only() {
        let mut store = store_with(&["a", "b"], &["t1", "t2"]);
        let now = Timestamp::from_millis(2);
        for (team, account) in [(501, 1001), (501, 1002), (502, 1001)] {
            assert!(store.add_member(team, account, now).is_ok());
        }
        assert!(store.delete_account(1001, Timestamp::from_millis(3)).is_ok());
        assert_eq!(member_ids(&store, 501), [1002]);
        assert!(member_ids(&store, 502).is_empty());
        assert_eq!(store.teams.get(502).map(|t| t.updated_at), Ok(Timestamp::from_millis(3)));
        assert!(store.delete_account(1001, now).is_err());
    }

    #[test]
    fn deleting_a_team_forgets_its_memberships() {
        let mut store = store_with(&["a"], &["t"]);
        let now = Timestamp::from_millis(2);
        assert!(store.add_member(501, 1001, now).is_ok());
        assert!(store.teams.remove(501).is_ok());
        // The reverse index no longer points at the deleted team.
        assert!(store.delete_account(1001, now).is_ok());
        assert!(store.teams.get(501).is_err());
    }
}
