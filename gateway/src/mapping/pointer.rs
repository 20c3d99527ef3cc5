//! JSON Pointer (RFC 6901) reads and writes on app objects. Writes create missing parent objects,
//! which is what lets one mapping line both read and build nested app fields.

use serde_json::{Map, Value};

/// Why a pointer is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON Pointer `{0}`: it must be empty or start with `/`")]
pub struct PointerError(pub String);

/// Checks the syntax of a pointer once, at load.
pub fn validate(ptr: &str) -> Result<(), PointerError> {
    if ptr.is_empty() || ptr.starts_with('/') { Ok(()) } else { Err(PointerError(ptr.to_owned())) }
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// Reads the value at `ptr`; `None` when absent.
pub fn get<'a>(v: &'a Value, ptr: &str) -> Option<&'a Value> {
    v.pointer(ptr)
}

/// Writes `value` at `ptr`, creating parent objects. Replaces non-object parents.
pub fn set(root: &mut Value, ptr: &str, value: Value) {
    if ptr.is_empty() {
        *root = value;
        return;
    }
    let mut cur = root;
    let tokens: Vec<String> = ptr[1..].split('/').map(unescape).collect();
    let Some((last, parents)) = tokens.split_last() else { return };
    for t in parents {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let Value::Object(map) = cur else { return };
        cur = map.entry(t.clone()).or_insert_with(|| Value::Object(Map::new()));
    }
    if !cur.is_object() {
        *cur = Value::Object(Map::new());
    }
    if let Value::Object(map) = cur {
        map.insert(last.clone(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_creates_parents() {
        let mut v = json!({});
        set(&mut v, "/profile/name/first", json!("B"));
        set(&mut v, "/a~1b", json!(1));
        assert_eq!(v, json!({"profile": {"name": {"first": "B"}}, "a/b": 1}));
        assert_eq!(get(&v, "/profile/name/first"), Some(&json!("B")));
    }

    #[test]
    fn validates_syntax() {
        assert!(validate("/x").is_ok());
        assert!(validate("").is_ok());
        assert!(validate("x").is_err());
    }
}
