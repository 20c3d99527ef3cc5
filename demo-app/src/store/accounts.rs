//! The account collection and its search indexes.

use std::collections::BTreeMap;

use super::index::Index;
use crate::error::{Error, Result};
use crate::model::{Account, AccountInput, fold};
use crate::page::{PageRequest, Paging};
use crate::time::Timestamp;

/// First id handed out.
const FIRST_ID: u64 = 1001;

/// Exact-match filters of `GET /accounts`; all given ones must match.
#[derive(Debug, Clone, Default)]
pub struct AccountFilter {
    /// Case-insensitive.
    pub login: Option<String>,
    /// Case-insensitive.
    pub email: Option<String>,
    /// Exact.
    pub ext_ref: Option<String>,
    /// Exact.
    pub org: Option<String>,
}

/// Accounts by id, plus indexes for search, uniqueness and cascades.
#[derive(Debug)]
pub struct Accounts {
    by_id: BTreeMap<u64, Account>,
    next_id: u64,
    indexes: Indexes,
}

#[derive(Debug, Default)]
struct Indexes {
    /// Folded login → id (at most one).
    login: Index<String>,
    /// Folded email → ids.
    email: Index<String>,
    ext_ref: Index<String>,
    org: Index<String>,
    /// Manager id → direct reports.
    reports: Index<u64>,
}

impl Indexes {
    fn add(&mut self, account: &Account) {
        let id = account.id;
        self.login.insert(fold(&account.login), id);
        if let Some(email) = &account.email {
            self.email.insert(fold(email), id);
        }
        if let Some(ext_ref) = &account.ext_ref {
            self.ext_ref.insert(ext_ref.clone(), id);
        }
        if let Some(org) = &account.org {
            self.org.insert(org.clone(), id);
        }
        if let Some(manager_id) = account.manager_id {
            self.reports.insert(manager_id, id);
        }
    }

    fn remove(&mut self, account: &Account) {
        let id = account.id;
        self.login.remove(&fold(&account.login), id);
        if let Some(email) = &account.email {
            self.email.remove(&fold(email), id);
        }
        if let Some(ext_ref) = &account.ext_ref {
            self.ext_ref.remove(ext_ref, id);
        }
        if let Some(org) = &account.org {
            self.org.remove(org, id);
        }
        if let Some(manager_id) = account.manager_id {
            self.reports.remove(&manager_id, id);
        }
    }
}

impl Default for Accounts {
    fn default() -> Self {
        Self { by_id: BTreeMap::new(), next_id: FIRST_ID, indexes: Indexes::default() }
    }
}

impl Accounts {
    /// The account with `id`, or `not_found`.
    /// Up to `limit` accounts with ids after `after`, in id order, and whether more follow
    /// (cursor paging: O(log n + limit) whatever the position).
    pub fn after(&self, after: u64, limit: usize) -> (Vec<&Account>, bool) {
        let mut iter = self.by_id.range(after.saturating_add(1)..).map(|(_, a)| a);
        let page: Vec<&Account> = iter.by_ref().take(limit).collect();
        (page, iter.next().is_some())
    }

    pub fn get(&self, id: u64) -> Result<&Account> {
        self.by_id.get(&id).ok_or_else(|| Error::not_found("account", id))
    }

    /// Whether an account with `id` exists.
    pub fn contains(&self, id: u64) -> bool {
        self.by_id.contains_key(&id)
    }

    /// Creates an account with the next id; status defaults to active.
    pub fn create(&mut self, input: AccountInput, now: Timestamp) -> Result<&Account> {
        self.validate(&input, None)?;
        let id = self.next_id;
        self.next_id += 1;
        let status = input.status.unwrap_or_default();
        let account = Account::new(id, input, status, now);
        self.indexes.add(&account);
        Ok(self.by_id.entry(id).or_insert(account))
    }

    /// Replaces every writable field; an absent status keeps the current one.
    pub fn replace(&mut self, id: u64, input: AccountInput, now: Timestamp) -> Result<&Account> {
        self.validate(&input, Some(id))?;
        let current = self.by_id.get_mut(&id).ok_or_else(|| Error::not_found("account", id))?;
        let status = input.status.unwrap_or(current.status);
        let mut replacement = Account::new(id, input, status, now);
        replacement.created_at = current.created_at;
        self.indexes.remove(current);
        self.indexes.add(&replacement);
        *current = replacement;
        Ok(current)
    }

    /// Removes an account and clears `manager_id` on its direct reports.
    /// Memberships are the caller's concern (see [`super::Store`]).
    pub(super) fn remove(&mut self, id: u64, now: Timestamp) -> Result<Account> {
        let account = self.by_id.remove(&id).ok_or_else(|| Error::not_found("account", id))?;
        self.indexes.remove(&account);
        for report_id in self.indexes.reports.take(&id) {
            if let Some(report) = self.by_id.get_mut(&report_id) {
                report.manager_id = None;
                report.updated_at = now;
            }
        }
        Ok(account)
    }

    /// One page of accounts matching `filter`, by ascending id.
    pub fn list(&self, filter: &AccountFilter, page: PageRequest) -> (Vec<&Account>, Paging) {
        let mut filters = Vec::new();
        if let Some(login) = &filter.login {
            filters.push(self.indexes.login.get(&fold(login)));
        }
        if let Some(email) = &filter.email {
            filters.push(self.indexes.email.get(&fold(email)));
        }
        if let Some(ext_ref) = &filter.ext_ref {
            filters.push(self.indexes.ext_ref.get(ext_ref));
        }
        if let Some(org) = &filter.org {
            filters.push(self.indexes.org.get(org));
        }
        super::list(&self.by_id, &filters, page)
    }

    /// Checks login uniqueness and the manager reference; `id` is the account
    /// being replaced, if any.
    fn validate(&self, input: &AccountInput, id: Option<u64>) -> Result<()> {
        let login_taken = self.indexes.login.get(&fold(&input.login)).iter().any(|&holder| Some(holder) != id);
        if login_taken {
            return Err(Error::Duplicate(format!("login '{}' is already taken", input.login)));
        }
        match input.manager_id {
            Some(manager_id) if Some(manager_id) == id => {
                Err(Error::invalid("field 'account.manager_id' must not reference the account itself"))
            }
            Some(manager_id) if !self.contains(manager_id) => Err(Error::invalid(format!(
                "field 'account.manager_id' references account {manager_id}, which does not exist"
            ))),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Status;

    fn input(login: &str) -> AccountInput {
        AccountInput { login: login.into(), ..AccountInput::default() }
    }

    fn ids(page: (Vec<&Account>, Paging)) -> Vec<u64> {
        page.0.iter().map(|a| a.id).collect()
    }

    const ALL: PageRequest = PageRequest { offset: 0, limit: 100 };

    #[test]
    fn ids_start_at_1001_and_logins_are_unique_ignoring_case() {
        let mut accounts = Accounts::default();
        let now = Timestamp::from_millis(1);
        assert_eq!(accounts.create(input("a"), now).map(|a| a.id), Ok(1001));
        assert_eq!(accounts.create(input("b"), now).map(|a| a.id), Ok(1002));
        assert!(matches!(accounts.create(input("A"), now), Err(Error::Duplicate(_))));
        // Replacing an account with its own login (in another case) is fine.
        assert!(accounts.replace(1001, input("A"), now).is_ok());
        assert!(accounts.replace(1001, input("b"), now).is_err());
    }

    #[test]
    fn replace_keeps_status_and_created_at_and_reindexes() {
        let mut accounts = Accounts::default();
        let suspended =
            AccountInput { status: Some(Status::Suspended), email: Some("X@example.com".into()), ..input("a") };
        let created = Timestamp::from_millis(1);
        let later = Timestamp::from_millis(2);
        assert!(accounts.create(suspended, created).is_ok());
        let replaced = accounts.replace(1001, input("a2"), later).cloned();
        let replaced = replaced.expect("replace");
        assert_eq!(replaced.status, Status::Suspended);
        assert_eq!(replaced.email, None);
        assert_eq!((replaced.created_at, replaced.updated_at), (created, later));
        let by_email = AccountFilter { email: Some("x@example.com".into()), ..AccountFilter::default() };
        assert!(ids(accounts.list(&by_email, ALL)).is_empty());
        let by_old_login = AccountFilter { login: Some("a".into()), ..AccountFilter::default() };
        assert!(ids(accounts.list(&by_old_login, ALL)).is_empty());
    }

    #[test]
    fn removing_a_manager_clears_reports() {
        let mut accounts = Accounts::default();
        let now = Timestamp::from_millis(1);
        assert!(accounts.create(input("boss"), now).is_ok());
        let report = AccountInput { manager_id: Some(1001), ..input("report") };
        assert!(accounts.create(report, now).is_ok());
        assert!(accounts.remove(1001, Timestamp::from_millis(5)).is_ok());
        let report = accounts.get(1002).expect("report exists");
        assert_eq!(report.manager_id, None);
        assert_eq!(report.updated_at, Timestamp::from_millis(5));
    }

    #[test]
    fn filters_intersect() {
        let mut accounts = Accounts::default();
        let now = Timestamp::from_millis(1);
        for (login, ext_ref) in [("a", "x"), ("b", "x"), ("c", "y")] {
            let account = AccountInput {
                ext_ref: Some(ext_ref.into()),
                email: Some("shared@example.com".into()),
                ..input(login)
            };
            assert!(accounts.create(account, now).is_ok());
        }
        let filter = AccountFilter {
            email: Some("SHARED@example.com".into()),
            ext_ref: Some("x".into()),
            ..AccountFilter::default()
        };
        assert_eq!(ids(accounts.list(&filter, ALL)), [1001, 1002]);
        let filter = AccountFilter { login: Some("B".into()), ext_ref: Some("y".into()), ..AccountFilter::default() };
        assert!(ids(accounts.list(&filter, ALL)).is_empty());
    }
}
