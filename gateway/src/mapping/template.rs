//! Templates in mapping files: strings with `{{ expression }}` parts and JSON bodies built from them.
//!
//! Expressions are minijinja expressions, compiled once when a mapping loads and evaluated against a
//! per-call context. One process-wide environment holds the language's settings (fuel budget, no I/O),
//! which lets compiled expressions be `'static` and shared between threads.

use std::sync::LazyLock;

use minijinja::value::Serde;
use minijinja::{Environment, Expression, UndefinedBehavior};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value};

/// Instructions one evaluation may spend; bounds hostile or buggy expressions.
const FUEL: u64 = 50_000;

/// Characters left alone when a value is placed in a URL path segment (RFC 3986 unreserved).
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_fuel(Some(FUEL));
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.set_recursion_limit(64);
    env.add_filter("basename", basename);
    env
});

/// `"https://h/3.1/users/0a1b" | basename` → `"0a1b"`: the last path segment of a URL or path, for
/// apps that name related objects by URL.
fn basename(v: String) -> String {
    let path = v.split(['?', '#']).next().unwrap_or_default().trim_end_matches('/');
    path.rsplit('/').next().unwrap_or_default().to_owned()
}

/// A template that did not compile or did not evaluate.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message} in template `{template}`")]
pub struct TemplateError {
    pub template: String,
    pub message: String,
}

/// A compiled `{{ … }}` expression and its source text.
pub struct Expr {
    source: String,
    compiled: Expression<'static, 'static>,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Expr({:?})", self.source)
    }
}

impl Expr {
    /// Compiles an expression (without the braces).
    pub fn compile(source: &str) -> Result<Self, TemplateError> {
        let compiled = ENV
            .compile_expression_owned(source.to_owned())
            .map_err(|e| TemplateError { template: source.to_owned(), message: e.to_string() })?;
        Ok(Self { source: source.to_owned(), compiled })
    }

    /// Evaluates to JSON; an undefined result is `null`.
    pub fn eval(&self, ctx: &Context) -> Result<Value, TemplateError> {
        let out = self
            .compiled
            .eval(ctx.0.clone())
            .map_err(|e| TemplateError { template: self.source.clone(), message: e.to_string() })?;
        if out.is_undefined() || out.is_none() {
            return Ok(Value::Null);
        }
        serde_json::to_value(&out).map_err(|e| TemplateError { template: self.source.clone(), message: e.to_string() })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// Variables visible to templates, built once per call.
#[derive(Clone)]
pub struct Context(minijinja::Value);

impl Context {
    /// A context from `name → JSON value` pairs.
    pub fn new<'a>(vars: impl IntoIterator<Item = (&'a str, &'a Value)>) -> Self {
        let map: Map<String, Value> = vars.into_iter().map(|(k, v)| (k.to_owned(), v.clone())).collect();
        Self(minijinja::Value::from(Serde(Value::Object(map))))
    }
}

/// How rendered values are escaped when joined into a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// As is (headers, query values: the HTTP client encodes those).
    None,
    /// Percent-encoded as one URL path segment.
    PathSegment,
}

#[derive(Debug)]
enum Part {
    Literal(String),
    Expr(Expr),
}

/// A string template: literal text with `{{ expr }}` parts.
#[derive(Debug)]
pub struct StrTemplate {
    parts: Vec<Part>,
}

impl StrTemplate {
    /// Parses and compiles `text`.
    pub fn compile(text: &str) -> Result<Self, TemplateError> {
        let err = |message: &str| TemplateError { template: text.to_owned(), message: message.to_owned() };
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after.find("}}").ok_or_else(|| err("unclosed `{{`"))?;
            let expr = after[..end].trim();
            if expr.is_empty() {
                return Err(err("empty `{{ }}`"));
            }
            parts.push(Part::Expr(Expr::compile(expr)?));
            rest = &after[end + 2..];
        }
        if rest.contains("}}") {
            return Err(err("`}}` without `{{`"));
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    /// Whether the template is exactly one `{{ expr }}`, so it can keep the expression's JSON type.
    fn whole_expr(&self) -> Option<&Expr> {
        match self.parts.as_slice() {
            [Part::Expr(e)] => Some(e),
            _ => None,
        }
    }

    /// Whether the template has no expression at all.
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    /// Renders to a string; `null` renders empty.
    pub fn render(&self, ctx: &Context, escape: Escape) -> Result<String, TemplateError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Expr(e) => {
                    let text = scalar_text(&e.eval(ctx)?);
                    match escape {
                        Escape::None => out.push_str(&text),
                        Escape::PathSegment => out.extend(utf8_percent_encode(&text, PATH_SEGMENT)),
                    }
                }
            }
        }
        Ok(out)
    }

    /// The names of the top-level variables the template reads (best effort, for `check`).
    pub fn expressions(&self) -> impl Iterator<Item = &Expr> {
        self.parts.iter().filter_map(|p| match p {
            Part::Expr(e) => Some(e),
            Part::Literal(_) => None,
        })
    }
}

/// The text of a JSON value when placed in a string: strings without quotes, null empty.
pub fn scalar_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A JSON body template: a JSON value whose strings may be templates.
#[derive(Debug)]
pub enum ValueTemplate {
    Literal(Value),
    Str(StrTemplate),
    Array(Vec<ValueTemplate>),
    Object(Vec<(String, ValueTemplate)>),
}

impl ValueTemplate {
    /// Compiles every string in `v` as a template.
    pub fn compile(v: &Value) -> Result<Self, TemplateError> {
        Ok(match v {
            Value::String(s) => {
                let t = StrTemplate::compile(s)?;
                if t.is_literal() { ValueTemplate::Literal(v.clone()) } else { ValueTemplate::Str(t) }
            }
            Value::Array(items) => ValueTemplate::Array(items.iter().map(Self::compile).collect::<Result<_, _>>()?),
            Value::Object(map) => ValueTemplate::Object(
                map.iter().map(|(k, v)| Ok((k.clone(), Self::compile(v)?))).collect::<Result<_, _>>()?,
            ),
            other => ValueTemplate::Literal(other.clone()),
        })
    }

    /// Renders to JSON. A string that is exactly one expression keeps the expression's type.
    pub fn render(&self, ctx: &Context) -> Result<Value, TemplateError> {
        Ok(match self {
            ValueTemplate::Literal(v) => v.clone(),
            ValueTemplate::Str(t) => match t.whole_expr() {
                Some(e) => e.eval(ctx)?,
                None => Value::String(t.render(ctx, Escape::None)?),
            },
            ValueTemplate::Array(items) => Value::Array(items.iter().map(|t| t.render(ctx)).collect::<Result<_, _>>()?),
            ValueTemplate::Object(fields) => {
                Value::Object(fields.iter().map(|(k, t)| Ok((k.clone(), t.render(ctx)?))).collect::<Result<_, _>>()?)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx(v: Value) -> Context {
        let Value::Object(map) = v else { panic!("object") };
        Context::new(map.iter().map(|(k, v)| (k.as_str(), v)))
    }

    #[test]
    fn renders_literals_and_expressions() {
        let t = StrTemplate::compile("/api/users/{{ id }}/x").unwrap();
        assert_eq!(t.render(&ctx(json!({"id": 42})), Escape::None).unwrap(), "/api/users/42/x");
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        let t = StrTemplate::compile("/u/{{ id }}").unwrap();
        let out = t.render(&ctx(json!({"id": "a/b c?"})), Escape::PathSegment).unwrap();
        assert_eq!(out, "/u/a%2Fb%20c%3F");
    }

    #[test]
    fn whole_expression_keeps_type() {
        let t = ValueTemplate::compile(&json!({"user": "{{ app }}", "n": "{{ n + 1 }}", "s": "x{{ n }}"})).unwrap();
        let out = t.render(&ctx(json!({"app": {"login": "b"}, "n": 1}))).unwrap();
        assert_eq!(out, json!({"user": {"login": "b"}, "n": 2, "s": "x1"}));
    }

    #[test]
    fn missing_values_are_null() {
        let e = Expr::compile("scim.name.givenName").unwrap();
        assert_eq!(e.eval(&ctx(json!({"scim": {}}))).unwrap(), Value::Null);
    }

    #[test]
    fn basename_filter() {
        let e = Expr::compile("entry.user | basename").unwrap();
        let out = e.eval(&ctx(json!({"entry": {"user": "http://h/3.1/users/0a1b/"}}))).unwrap();
        assert_eq!(out, json!("0a1b"));
    }

    #[test]
    fn bad_templates_are_rejected() {
        assert!(StrTemplate::compile("{{ id ").is_err());
        assert!(StrTemplate::compile("{{ }}").is_err());
        assert!(StrTemplate::compile("{{ 1 + }}").is_err());
        assert!(StrTemplate::compile("x }}").is_err());
    }

    #[test]
    fn evaluation_is_bounded() {
        // Expressions have no loops; the engine caps the builtins that could build large values.
        let e = Expr::compile("range(1000000) | list | length").unwrap();
        assert!(e.eval(&ctx(json!({}))).is_err());
    }
}
