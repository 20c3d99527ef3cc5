//! Accounts: the app's users.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::extract::Object;
use crate::time::Timestamp;

/// Whether an account may sign in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Active,
    Suspended,
}

impl Status {
    fn parse(value: &str) -> Result<Self> {
        match value {
            "active" => Ok(Self::Active),
            "suspended" => Ok(Self::Suspended),
            _ => Err(Error::invalid("field 'account.status' must be 'active' or 'suspended'")),
        }
    }
}

/// A stored account, serialized exactly as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    pub id: u64,
    pub login: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub display: Option<String>,
    pub nick: Option<String>,
    pub job_title: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub status: Status,
    pub employee_no: Option<String>,
    pub department: Option<String>,
    pub cost_center: Option<String>,
    pub org: Option<String>,
    pub division: Option<String>,
    pub manager_id: Option<u64>,
    pub ext_ref: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// The writable fields of a `POST` or `PUT` body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountInput {
    pub login: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub display: Option<String>,
    pub nick: Option<String>,
    pub job_title: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// `None` means "active" on create and "unchanged" on replace.
    pub status: Option<Status>,
    pub employee_no: Option<String>,
    pub department: Option<String>,
    pub cost_center: Option<String>,
    pub org: Option<String>,
    pub division: Option<String>,
    pub manager_id: Option<u64>,
    pub ext_ref: Option<String>,
}

impl AccountInput {
    /// Parses `{"account": {...}}`, rejecting unknown fields anywhere.
    /// Read-only `id`, `created_at` and `updated_at` are accepted and ignored.
    pub fn from_body(mut body: Object) -> Result<Self> {
        let mut a = body.take_object("account")?;
        body.finish()?;
        a.ignore(&["id", "created_at", "updated_at"]);
        let input = Self {
            login: a.take_required_str("login")?,
            first_name: a.take_str("first_name")?,
            last_name: a.take_str("last_name")?,
            display: a.take_str("display")?,
            nick: a.take_str("nick")?,
            job_title: a.take_str("job_title")?,
            email: a.take_str("email")?,
            phone: a.take_str("phone")?,
            status: a.take_str("status")?.as_deref().map(Status::parse).transpose()?,
            employee_no: a.take_str("employee_no")?,
            department: a.take_str("department")?,
            cost_center: a.take_str("cost_center")?,
            org: a.take_str("org")?,
            division: a.take_str("division")?,
            manager_id: a.take_id("manager_id")?,
            ext_ref: a.take_str("ext_ref")?,
        };
        a.finish()?;
        Ok(input)
    }
}

impl Account {
    /// Builds the stored form of `input`; both timestamps are set to `now`.
    pub fn new(id: u64, input: AccountInput, status: Status, now: Timestamp) -> Self {
        Self {
            id,
            login: input.login,
            first_name: input.first_name,
            last_name: input.last_name,
            display: input.display,
            nick: input.nick,
            job_title: input.job_title,
            email: input.email,
            phone: input.phone,
            status,
            employee_no: input.employee_no,
            department: input.department,
            cost_center: input.cost_center,
            org: input.org,
            division: input.division,
            manager_id: input.manager_id,
            ext_ref: input.ext_ref,
            created_at: now,
            updated_at: now,
        }
    }
}
