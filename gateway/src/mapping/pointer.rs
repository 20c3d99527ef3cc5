//! Paths into app objects: JSON Pointer (RFC 6901) plus one extension, an array picker
//! `name[key=value]` that selects the element of array `name` whose `key` equals `value`
//! (`/custom_fields[id=1]/value`). Parsed once at load; writes create missing parents, including
//! a picked element, which is what lets one mapping line both read and build nested app fields.

use std::fmt;

use serde_json::{Map, Value};

/// Why a pointer is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid app path `{path}`: {reason}")]
pub struct PointerError {
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Key(String),
    /// `array[key=value]`.
    Pick {
        array: String,
        key: String,
        value: String,
    },
}

/// A parsed app path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    source: String,
    tokens: Vec<Token>,
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

impl Pointer {
    /// Parses `path`: empty (the whole value) or `/`-separated tokens.
    pub fn parse(path: &str) -> Result<Self, PointerError> {
        let bad = |reason: &str| PointerError { path: path.to_owned(), reason: reason.to_owned() };
        if path.is_empty() {
            return Ok(Self { source: String::new(), tokens: Vec::new() });
        }
        let rest = path.strip_prefix('/').ok_or_else(|| bad("it must be empty or start with `/`"))?;
        let tokens = rest
            .split('/')
            .map(|raw| match raw.strip_suffix(']').and_then(|r| r.split_once('[')) {
                Some((array, cond)) => {
                    let (key, value) = cond.split_once('=').ok_or_else(|| bad("a picker reads `name[key=value]`"))?;
                    if array.is_empty() || key.is_empty() {
                        return Err(bad("a picker reads `name[key=value]`"));
                    }
                    Ok(Token::Pick { array: unescape(array), key: unescape(key), value: unescape(value) })
                }
                None => Ok(Token::Key(unescape(raw))),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { source: path.to_owned(), tokens })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether this is the whole value (`""`).
    pub fn is_root(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The value at this path; `None` when absent.
    pub fn get<'a>(&self, v: &'a Value) -> Option<&'a Value> {
        let mut cur = v;
        for t in &self.tokens {
            cur = match t {
                Token::Key(k) => match cur {
                    Value::Object(m) => m.get(k)?,
                    Value::Array(a) => a.get(k.parse::<usize>().ok()?)?,
                    _ => return None,
                },
                Token::Pick { array, key, value } => {
                    cur.get(array)?.as_array()?.iter().find(|e| e.get(key).is_some_and(|x| matches(x, value)))?
                }
            };
        }
        Some(cur)
    }

    /// Writes `value` at this path, creating parent objects and picked elements.
    pub fn set(&self, root: &mut Value, value: Value) {
        let mut cur = root;
        for t in &self.tokens {
            if !cur.is_object() {
                *cur = Value::Object(Map::new());
            }
            let Value::Object(map) = cur else { return };
            cur = match t {
                Token::Key(k) => map.entry(k.clone()).or_insert(Value::Null),
                Token::Pick { array, key, value: want } => {
                    let arr = map.entry(array.clone()).or_insert_with(|| Value::Array(Vec::new()));
                    if !arr.is_array() {
                        *arr = Value::Array(Vec::new());
                    }
                    let Value::Array(items) = arr else { return };
                    let idx = match items.iter().position(|e| e.get(key).is_some_and(|x| matches(x, want))) {
                        Some(i) => i,
                        None => {
                            let mut e = Map::new();
                            e.insert(key.clone(), picker_value(want));
                            items.push(Value::Object(e));
                            items.len() - 1
                        }
                    };
                    &mut items[idx]
                }
            };
        }
        *cur = value;
    }
}

impl fmt::Display for Pointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// A picker compares as text, so `[id=1]` finds `"id": 1` and `"id": "1"`.
fn matches(v: &Value, want: &str) -> bool {
    match v {
        Value::String(s) => s == want,
        Value::Number(n) => n.to_string() == want,
        Value::Bool(b) => b.to_string() == want,
        _ => false,
    }
}

/// The key value a created element gets: a number when it reads as one.
fn picker_value(s: &str) -> Value {
    s.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::String(s.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> Pointer {
        Pointer::parse(s).unwrap()
    }

    #[test]
    fn set_creates_parents() {
        let mut v = json!({});
        p("/profile/name/first").set(&mut v, json!("B"));
        p("/a~1b").set(&mut v, json!(1));
        assert_eq!(v, json!({"profile": {"name": {"first": "B"}}, "a/b": 1}));
        assert_eq!(p("/profile/name/first").get(&v), Some(&json!("B")));
        assert_eq!(p("").get(&v), Some(&v));
    }

    #[test]
    fn pickers_read_and_build_array_elements() {
        let v = json!({"custom_fields": [{"id": 2, "value": "x"}, {"id": 1, "name": "externalId", "value": "ext-42"}]});
        assert_eq!(p("/custom_fields[id=1]/value").get(&v), Some(&json!("ext-42")));
        assert_eq!(p("/custom_fields[name=externalId]/value").get(&v), Some(&json!("ext-42")));
        assert_eq!(p("/custom_fields[id=9]/value").get(&v), None);
        let mut out = json!({});
        p("/custom_fields[id=1]/value").set(&mut out, json!("e"));
        p("/custom_fields[id=1]/value").set(&mut out, json!("f"));
        assert_eq!(out, json!({"custom_fields": [{"id": 1, "value": "f"}]}));
        assert_eq!(p("/items/1").get(&json!({"items": [0, 5]})), Some(&json!(5)));
    }

    #[test]
    fn validates_syntax() {
        assert!(Pointer::parse("x").is_err());
        assert!(Pointer::parse("/a[b]").is_err());
        assert!(Pointer::parse("/[k=v]").is_err());
    }
}
