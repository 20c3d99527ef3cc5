//! The SCIM 2.0 protocol (RFC 7643/7644): schemas, filters, PATCH, lists, discovery documents,
//! resource validation and errors. Pure data and functions: nothing here performs HTTP or I/O, so
//! every rule is testable on its own and shared by all tenants.

pub mod discovery;
pub mod error;
pub mod filter;
pub mod list;
pub mod patch;
pub mod path;
pub mod resource;
pub mod schema;
