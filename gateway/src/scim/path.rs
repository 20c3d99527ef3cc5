//! Attribute paths (RFC 7644 §3.10) and PATCH paths (RFC 7644 §3.5.2 `PATH` ABNF).
//!
//! Parsing lives in `filter` because both grammars share one lexer.

use super::filter::Filter;

/// `[urn ":"] name ["." sub]`, e.g. `name.givenName`,
/// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value`.
/// Names keep the spelling the client used; compare them case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    /// Schema URN, if the path was URN-qualified (without the trailing `:`).
    pub urn: Option<String>,
    pub name: String,
    pub sub: Option<String>,
}

impl AttrPath {
    /// A path to a top-level core attribute.
    pub fn new(name: &str) -> Self {
        Self { urn: None, name: name.to_owned(), sub: None }
    }
    /// A path to a sub-attribute of a core attribute.
    pub fn with_sub(name: &str, sub: &str) -> Self {
        Self { urn: None, name: name.to_owned(), sub: Some(sub.to_owned()) }
    }
}

/// A PATCH `path`: an attribute path, or a value path with an optional sub-attribute
/// (`emails[type eq "work"].value`, `members[value eq "2819c223"]`).
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    /// The attribute; `sub` is set only for the plain form `name.givenName`.
    pub attr: AttrPath,
    /// The value filter inside `[...]`, if any.
    pub filter: Option<Filter>,
    /// The sub-attribute after `].`, if any (only with `filter`).
    pub sub: Option<String>,
}
