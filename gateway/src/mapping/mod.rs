//! The mapping language: how SCIM resources and operations become one app's REST calls.
//!
//! - `spec`: the file format (serde types), documented in `docs/mapping.md`.
//! - `compile`: turns a spec into a [`Mapping`] once, at config load: templates compiled, pointers and
//!   SCIM paths parsed, the tenant-facing SCIM schema derived from what is mapped.
//! - `transform`: SCIM JSON ↔ app JSON, pure.
//! - `call`: renders a call template into a [`call::AppRequest`], pure.
//! - `errors`: the app's error answers → SCIM errors.
//!
//! Nothing here performs I/O; `backend` sends what `call` renders.

pub mod call;
pub mod compile;
pub mod errors;
pub mod pointer;
pub mod spec;
pub mod template;
pub mod transform;

pub use compile::{
    AttrMap, AuthTemplate, CompileError, Mapping, MemberId, MembersMapping, Paging, ResourceKind, ResourceMapping,
    compile,
};
