//! Teams: the app's groups, and their memberships.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};

use crate::error::Result;
use crate::extract::Object;
use crate::time::Timestamp;

/// A stored team with its members, serialized with only a `member_count`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Team {
    pub id: u64,
    pub name: String,
    pub ext_ref: Option<String>,
    pub description: Option<String>,
    /// Member account id → when it was added; ordered so paging is by id.
    #[serde(rename = "member_count", serialize_with = "serialize_len")]
    pub members: BTreeMap<u64, Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

fn serialize_len<S: Serializer>(members: &BTreeMap<u64, Timestamp>, serializer: S) -> Result<S::Ok, S::Error> {
    members.len().serialize(serializer)
}

/// One membership as listed by `GET /teams/{id}/members`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Member {
    pub account_id: u64,
    pub added_at: Timestamp,
}

/// The writable fields of a team `POST` or `PUT` body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TeamInput {
    pub name: String,
    pub ext_ref: Option<String>,
    pub description: Option<String>,
}

impl TeamInput {
    /// Parses `{"team": {...}}`, rejecting unknown fields anywhere.
    /// Read-only `id`, `member_count` and timestamps are accepted and ignored.
    pub fn from_body(mut body: Object) -> Result<Self> {
        let mut t = body.take_object("team")?;
        body.finish()?;
        t.ignore(&["id", "member_count", "created_at", "updated_at"]);
        let input = Self {
            name: t.take_required_str("name")?,
            ext_ref: t.take_str("ext_ref")?,
            description: t.take_str("description")?,
        };
        t.finish()?;
        Ok(input)
    }
}

impl Team {
    /// Builds an empty team from `input`; both timestamps are set to `now`.
    pub fn new(id: u64, input: TeamInput, now: Timestamp) -> Self {
        Self {
            id,
            name: input.name,
            ext_ref: input.ext_ref,
            description: input.description,
            members: BTreeMap::new(),
            created_at: now,
            updated_at: now,
        }
    }
}
