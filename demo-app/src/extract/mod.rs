//! Request extractors that turn every rejection into the app's error format.

mod body;
mod path;
mod query;

pub use body::{BODY_LIMIT, JsonObject, Object};
pub use path::Ids;
pub use query::Params;
