//! Query strings: paging plus a resource-specific set of exact-match filters.

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;

use crate::error::{Error, Result};
use crate::page::PageRequest;

/// The query string as key/value pairs, consumed like a JSON [`Object`]:
/// each `take` removes a parameter and [`Params::finish`] rejects unknown
/// ones, so a misspelt filter never silently lists everything.
///
/// [`Object`]: super::Object
#[derive(Debug)]
pub struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map(|Query(pairs)| Self(pairs))
            .map_err(|rejection| Error::BadRequest(rejection.body_text()))
    }
}

impl Params {
    /// Removes parameter `name`; giving it more than once is invalid.
    pub fn take(&mut self, name: &str) -> Result<Option<String>> {
        let mut found = None;
        let mut error = None;
        self.0.retain(|(key, value)| {
            if key != name {
                return true;
            }
            if found.replace(value.clone()).is_some() {
                error = Some(Error::invalid(format!("query parameter '{name}' given more than once")));
            }
            false
        });
        error.map_or(Ok(found), Err)
    }

    /// Removes `offset` and `limit`, clamping `limit` to `max_limit`.
    pub fn take_page(&mut self, default_limit: usize, max_limit: usize) -> Result<PageRequest> {
        let offset = self.take_number("offset")?.unwrap_or(0);
        let limit = self.take_number("limit")?.unwrap_or(default_limit);
        Ok(PageRequest { offset, limit: limit.min(max_limit) })
    }

    /// Fails on the first parameter no `take` consumed.
    pub fn finish(self) -> Result<()> {
        match self.0.first() {
            Some((key, _)) => Err(Error::invalid(format!("unknown query parameter '{key}'"))),
            None => Ok(()),
        }
    }

    fn take_number(&mut self, name: &str) -> Result<Option<usize>> {
        self.take(name)?
            .map(|raw| {
                raw.parse()
                    .map_err(|_| Error::invalid(format!("query parameter '{name}' must be a non-negative integer")))
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
    }

    #[test]
    fn paging_defaults_and_clamps() {
        let mut p = params(&[]);
        assert_eq!(p.take_page(50, 200), Ok(PageRequest { offset: 0, limit: 50 }));
        let mut p = params(&[("limit", "5000"), ("offset", "3")]);
        assert_eq!(p.take_page(50, 200), Ok(PageRequest { offset: 3, limit: 200 }));
        assert_eq!(p.finish(), Ok(()));
    }

    #[test]
    fn rejects_bad_numbers_duplicates_and_unknowns() {
        assert!(params(&[("limit", "-1")]).take_page(50, 200).is_err());
        assert!(params(&[("login", "a"), ("login", "b")]).take("login").is_err());
        assert_eq!(params(&[("logn", "a")]).finish(), Err(Error::invalid("unknown query parameter 'logn'")));
    }
}
