//! Strict JSON bodies: parsed into a map, then read field by field so every
//! type error and every unknown field is reported by name.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Largest accepted request body, in bytes (1 MiB).
pub const BODY_LIMIT: usize = 1 << 20;

/// A request body that must be a JSON object.
///
/// Unparseable bodies and non-object JSON are `400 bad_request`; bodies over
/// [`BODY_LIMIT`] are `413 payload_too_large`.
#[derive(Debug)]
pub struct JsonObject(pub Object);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::PayloadTooLarge { limit: BODY_LIMIT }
            } else {
                Error::BadRequest(rejection.body_text())
            }
        })?;
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(map)) => Ok(Self(Object::new("", map))),
            Ok(_) => Err(Error::BadRequest("body must be a JSON object".into())),
            Err(err) => Err(Error::BadRequest(format!("body is not valid JSON: {err}"))),
        }
    }
}

/// A JSON object consumed field by field.
///
/// Each `take_*` removes a field and checks its type; [`Object::finish`]
/// rejects whatever is left, which is how unknown fields are refused.
#[derive(Debug)]
pub struct Object {
    path: String,
    map: Map<String, Value>,
}

impl Object {
    fn new(path: &str, map: Map<String, Value>) -> Self {
        Self { path: path.to_owned(), map }
    }

    /// Dotted path of a field of this object, as shown in error messages.
    fn field_path(&self, name: &str) -> String {
        if self.path.is_empty() { name.to_owned() } else { format!("{}.{name}", self.path) }
    }

    /// Removes `name`, treating `null` as absent.
    fn take(&mut self, name: &str) -> Option<Value> {
        self.map.remove(name).filter(|value| !value.is_null())
    }

    /// A required nested object.
    pub fn take_object(&mut self, name: &str) -> Result<Object> {
        match self.take(name) {
            Some(Value::Object(map)) => Ok(Object::new(&self.field_path(name), map)),
            Some(_) => Err(self.wrong_type(name, "an object")),
            None => Err(self.missing(name)),
        }
    }

    /// An optional string; `null` and absent both read as `None`.
    pub fn take_str(&mut self, name: &str) -> Result<Option<String>> {
        match self.take(name) {
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.wrong_type(name, "a string or null")),
            None => Ok(None),
        }
    }

    /// A required string that must contain a non-whitespace character.
    pub fn take_required_str(&mut self, name: &str) -> Result<String> {
        match self.take_str(name)? {
            Some(s) if !s.trim().is_empty() => Ok(s),
            Some(_) => Err(Error::invalid(format!("field '{}' must not be empty", self.field_path(name)))),
            None => Err(self.missing(name)),
        }
    }

    /// An optional positive integer id; `null` and absent both read as `None`.
    pub fn take_id(&mut self, name: &str) -> Result<Option<u64>> {
        match self.take(name) {
            Some(Value::Number(n)) => match n.as_u64() {
                Some(id) if id > 0 => Ok(Some(id)),
                _ => Err(self.wrong_type(name, "a positive integer id or null")),
            },
            Some(_) => Err(self.wrong_type(name, "a positive integer id or null")),
            None => Ok(None),
        }
    }

    /// A required array of positive integer ids.
    pub fn take_required_ids(&mut self, name: &str) -> Result<Vec<u64>> {
        match self.take(name) {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_u64()
                        .filter(|id| *id > 0)
                        .ok_or_else(|| self.wrong_type(name, "an array of positive integer ids"))
                })
                .collect(),
            Some(_) => Err(self.wrong_type(name, "an array of positive integer ids")),
            None => Err(self.missing(name)),
        }
    }

    /// A required positive integer id.
    pub fn take_required_id(&mut self, name: &str) -> Result<u64> {
        match self.take(name) {
            Some(Value::Number(n)) => match n.as_u64() {
                Some(id) if id > 0 => Ok(id),
                _ => Err(self.wrong_type(name, "a positive integer id")),
            },
            Some(_) => Err(self.wrong_type(name, "a positive integer id")),
            None => Err(self.missing(name)),
        }
    }

    /// Drops fields that are accepted but not used (e.g. read-only `id`).
    pub fn ignore(&mut self, names: &[&str]) {
        for name in names {
            self.map.remove(*name);
        }
    }

    /// Fails on the first field no `take_*` call consumed.
    pub fn finish(self) -> Result<()> {
        match self.map.keys().next() {
            Some(name) => Err(Error::invalid(format!("unknown field '{}'", self.field_path(name)))),
            None => Ok(()),
        }
    }

    fn missing(&self, name: &str) -> Error {
        Error::invalid(format!("field '{}' is required", self.field_path(name)))
    }

    fn wrong_type(&self, name: &str, expected: &str) -> Error {
        Error::invalid(format!("field '{}' must be {expected}", self.field_path(name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Object {
        match value {
            Value::Object(map) => Object::new("account", map),
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn reads_typed_fields_and_treats_null_as_absent() {
        let mut obj = object(json!({"login": "a", "nick": null, "manager_id": 7}));
        assert_eq!(obj.take_required_str("login"), Ok("a".into()));
        assert_eq!(obj.take_str("nick"), Ok(None));
        assert_eq!(obj.take_str("phone"), Ok(None));
        assert_eq!(obj.take_id("manager_id"), Ok(Some(7)));
        assert_eq!(obj.finish(), Ok(()));
    }

    #[test]
    fn names_the_offending_field() {
        let mut obj = object(json!({"login": 5}));
        let err = obj.take_required_str("login");
        assert_eq!(err, Err(Error::invalid("field 'account.login' must be a string or null")));

        let mut obj = object(json!({"login": "  "}));
        assert_eq!(obj.take_required_str("login"), Err(Error::invalid("field 'account.login' must not be empty")));

        let mut obj = object(json!({"manager_id": -1}));
        assert!(obj.take_id("manager_id").is_err());

        let obj = object(json!({"nickname": "x"}));
        assert_eq!(obj.finish(), Err(Error::invalid("unknown field 'account.nickname'")));
    }
}
