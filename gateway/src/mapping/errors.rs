//! Translation of an app's error answers into SCIM errors (RFC 7644 §3.12).
//!
//! The app's own message becomes the SCIM `detail` so an operator reading Entra's provisioning log
//! sees what the app said; statuses without a rule fall back to safe defaults.

use serde_json::Value;

use super::pointer::Pointer;
use super::spec::ErrorSpec;
use crate::scim::error::{ScimError, ScimType};

/// Compiled error rules.
#[derive(Debug)]
pub struct ErrorMap {
    message: Option<Pointer>,
    rules: Vec<Rule>,
}

#[derive(Debug)]
struct Rule {
    status: u16,
    message_contains: Option<String>,
    body: Vec<(Pointer, Value)>,
    out_status: u16,
    out_type: Option<ScimType>,
}

/// Parses a `scimType` keyword.
pub fn scim_type(s: &str) -> Option<ScimType> {
    use ScimType::*;
    [
        InvalidFilter,
        TooMany,
        Uniqueness,
        Mutability,
        InvalidSyntax,
        InvalidPath,
        NoTarget,
        InvalidValue,
        InvalidVers,
        Sensitive,
    ]
    .into_iter()
    .find(|t| t.as_str() == s)
}

impl ErrorMap {
    /// Compiles the `errors:` section.
    pub fn compile(spec: &ErrorSpec) -> Result<Self, String> {
        let message = spec.message.as_deref().map(Pointer::parse).transpose().map_err(|e| e.to_string())?;
        let rules = spec
            .rules
            .iter()
            .map(|r| {
                let out_type = match &r.scim.scim_type {
                    Some(t) => Some(scim_type(t).ok_or_else(|| format!("unknown scimType `{t}`"))?),
                    None => None,
                };
                if !(400..600).contains(&r.scim.status) {
                    return Err(format!("SCIM error status {} is not a 4xx/5xx", r.scim.status));
                }
                let body = r
                    .when
                    .body
                    .iter()
                    .map(|(k, v)| Ok((Pointer::parse(k).map_err(|e| e.to_string())?, v.clone())))
                    .collect::<Result<_, String>>()?;
                Ok(Rule {
                    status: r.when.status,
                    message_contains: r.when.message_contains.as_ref().map(|m| m.to_lowercase()),
                    body,
                    out_status: r.scim.status,
                    out_type,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self { message, rules })
    }

    /// The SCIM error for an app answer with `status` and `body`; `what` names the call for the detail.
    pub fn translate(&self, status: u16, body: &Value, what: &str) -> ScimError {
        let app_message = self.message.as_ref().and_then(|p| p.get(body)).map(message_text).map(|m| truncate(&m, 500));
        let detail = match &app_message {
            Some(m) => format!("{what}: the application answered {status}: {m}"),
            None => format!("{what}: the application answered {status}"),
        };
        if let Some(rule) = self.rules.iter().find(|r| {
            r.status == status
                && r.body.iter().all(|(p, v)| p.get(body) == Some(v))
                && r.message_contains.as_ref().is_none_or(|needle| {
                    app_message.as_ref().is_some_and(|m| m.to_lowercase().contains(needle.as_str()))
                })
        }) {
            return ScimError { status: rule.out_status, scim_type: rule.out_type, detail, retry_after: None };
        }
        match status {
            404 => ScimError::status(404, detail),
            409 => ScimError::new(409, ScimType::Uniqueness, detail),
            400 | 422 => ScimError::new(400, ScimType::InvalidValue, detail),
            429 | 503 => ScimError::status(503, detail),
            401 | 403 => ScimError::status(502, format!("{detail} (check the tenant's backend credentials)")),
            _ => ScimError::status(502, detail),
        }
    }
}

/// An app's message as text: strings as they are, arrays of messages joined (`{"errors": [...]}`).
fn message_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(message_text).collect::<Vec<_>>().join("; "),
        other => other.to_string(),
    }
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::spec::{ErrorMatch, ErrorRule, ScimErrorSpec};
    use serde_json::json;

    #[test]
    fn message_arrays_and_message_rules() {
        let spec = ErrorSpec {
            message: Some("/errors".into()),
            rules: vec![ErrorRule {
                when: ErrorMatch {
                    status: 422,
                    message_contains: Some("HAS ALREADY BEEN TAKEN".into()),
                    body: Default::default(),
                },
                scim: ScimErrorSpec { status: 409, scim_type: Some("uniqueness".into()) },
            }],
        };
        let m = ErrorMap::compile(&spec).unwrap();
        let body = json!({"errors": ["Email has already been taken", "Login has already been taken"]});
        let e = m.translate(422, &body, "create User");
        assert_eq!((e.status, e.scim_type), (409, Some(ScimType::Uniqueness)));
        assert!(e.detail.contains("Email has already been taken; Login has already been taken"), "{}", e.detail);
        let e = m.translate(422, &json!({"errors": ["Last name cannot be blank"]}), "create User");
        assert_eq!((e.status, e.scim_type), (400, Some(ScimType::InvalidValue)));
    }

    #[test]
    fn rules_and_defaults() {
        let spec = ErrorSpec {
            message: Some("/error/message".into()),
            rules: vec![ErrorRule {
                when: ErrorMatch {
                    status: 409,
                    message_contains: None,
                    body: [("/error/code".to_owned(), json!("already_member"))].into(),
                },
                scim: ScimErrorSpec { status: 400, scim_type: Some("invalidValue".into()) },
            }],
        };
        let m = ErrorMap::compile(&spec).unwrap();
        let e = m.translate(409, &json!({"error": {"code": "duplicate", "message": "login taken"}}), "create User");
        assert_eq!((e.status, e.scim_type), (409, Some(ScimType::Uniqueness)));
        assert!(e.detail.contains("login taken"));
        let e = m.translate(409, &json!({"error": {"code": "already_member"}}), "x");
        assert_eq!((e.status, e.scim_type), (400, Some(ScimType::InvalidValue)));
        assert_eq!(m.translate(500, &json!(null), "x").status, 502);
    }
}
