//! Resources as stored and as serialized, plus parsing of their request bodies.

mod account;
mod team;

#[cfg(test)]
pub use account::Status;
pub use account::{Account, AccountInput};
pub use team::{Member, Team, TeamInput};

/// Case-folds a value for case-insensitive uniqueness and search.
pub fn fold(value: &str) -> String {
    value.to_lowercase()
}
