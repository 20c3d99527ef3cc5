//! scimbridge: a multi-tenant SCIM 2.0 gateway that provisions identity-provider users and groups
//! into legacy REST applications, driven entirely by declarative mapping files.
//!
//! See `ARCHITECTURE.md` for the module map and the way a request flows through them.

pub mod audit;
pub mod auth;
pub mod backend;
pub mod config;
pub mod explain;
pub mod mapping;
pub mod provision;
pub mod ratelimit;
pub mod reload;
pub mod scim;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tenant;
