//! `${VAR}` and `${VAR:-default}` in config values, so secrets come from the environment (or a
//! secret manager that fills it) rather than from files in a repository.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// A string config value with environment references expanded at load.
#[derive(Clone, PartialEq, Eq)]
pub struct EnvString(pub String);

impl fmt::Debug for EnvString {
    // Values may be secrets: never print them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EnvString(..)")
    }
}

/// Expands `${NAME}` / `${NAME:-default}` with `lookup`; `$$` is a literal `$`.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let Some(body) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let end = body.find('}').ok_or_else(|| format!("unclosed `${{` in `{input}`"))?;
        let expr = &body[..end];
        let (name, default) = match expr.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (expr, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("`${{{expr}}}` is not a valid environment reference"));
        }
        match lookup(name).filter(|v| !v.is_empty()).or_else(|| default.map(str::to_owned)) {
            Some(v) => out.push_str(&v),
            None => return Err(format!("environment variable `{name}` is not set")),
        }
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

impl<'de> Deserialize<'de> for EnvString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        expand(&raw, |n| std::env::var(n).ok()).map(EnvString).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(n: &str) -> Option<String> {
        (n == "A").then(|| "alpha".to_owned())
    }

    #[test]
    fn expands() {
        assert_eq!(expand("x${A}y", env).unwrap(), "xalphay");
        assert_eq!(expand("${B:-http://h:1}", env).unwrap(), "http://h:1");
        assert_eq!(expand("$$5 $x", env).unwrap(), "$5 $x");
        assert!(expand("${B}", env).unwrap_err().contains("`B` is not set"));
        assert!(expand("${A", env).is_err());
        assert!(expand("${a-b}", env).is_err());
    }
}
