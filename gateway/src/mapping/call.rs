//! A call template (method, path, query, headers, body) and its rendering into a concrete request.

use reqwest::Method;
use serde_json::Value;

use super::spec::{BodyEncoding, CallSpec, IdFrom};
use super::template::{Context, Escape, Expr, StrTemplate, TemplateError, ValueTemplate};

/// Which of a mapping's calls a request comes from, named as the mapping file names it. A fixed
/// set, so it can label metrics and spans where the rendered path (with ids) cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallRole {
    Create,
    /// A further call of a create sequence (`create[1]`, ...).
    AfterCreate,
    Read,
    Extra,
    Replace,
    Delete,
    List,
    /// A search's single-object `lookup` call.
    Lookup,
    MembersList,
    MembersAdd,
    MembersRemove,
    MembersSet,
}

impl CallRole {
    /// The name, as in the mapping file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::AfterCreate => "create.after",
            Self::Read => "read",
            Self::Extra => "extras",
            Self::Replace => "replace",
            Self::Delete => "delete",
            Self::List => "list",
            Self::Lookup => "search.lookup",
            Self::MembersList => "members.list",
            Self::MembersAdd => "members.add",
            Self::MembersRemove => "members.remove",
            Self::MembersSet => "members.set",
        }
    }
}

/// A compiled call: everything but the values is fixed at load.
#[derive(Debug)]
pub struct Call {
    pub role: CallRole,
    pub method: Method,
    path: StrTemplate,
    query: Vec<(String, StrTemplate)>,
    headers: Vec<(String, StrTemplate)>,
    body: Option<ValueTemplate>,
    encoding: BodyEncoding,
    /// Where a created object's id is.
    pub id_from: IdFrom,
    /// Where the object is in the response.
    pub result: Option<super::pointer::Pointer>,
    /// Statuses that count as success besides 2xx.
    pub ok_statuses: Vec<u16>,
    /// The call is made only when this is true.
    pub when: Option<Expr>,
}

/// A rendered request, relative to the tenant's base URL: what would be sent, printable as is.
#[derive(Debug, Clone, PartialEq)]
pub struct AppRequest {
    /// The mapping call it was rendered from.
    pub call: CallRole,
    pub method: Method,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Option<Body>,
}

/// A request body.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Json(Value),
    /// Form fields, in order.
    Form(Vec<(String, String)>),
}

/// Flattens JSON into form fields: nested objects as `a[b]`, arrays as `a[]`, `null` left out.
pub fn form_fields(v: &Value) -> Vec<(String, String)> {
    fn walk(prefix: Option<&str>, v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Null => {}
            Value::Object(m) => {
                for (k, x) in m {
                    let key = prefix.map_or_else(|| k.clone(), |p| format!("{p}[{k}]"));
                    walk(Some(&key), x, out);
                }
            }
            Value::Array(a) => {
                let key = format!("{}[]", prefix.unwrap_or_default());
                for x in a {
                    walk(Some(&key), x, out);
                }
            }
            scalar => out.push((prefix.unwrap_or_default().to_owned(), super::template::scalar_text(scalar))),
        }
    }
    let mut out = Vec::new();
    walk(None, v, &mut out);
    out
}

impl Call {
    /// Compiles a call spec, the mapping's call `role`.
    pub fn compile(spec: &CallSpec, role: CallRole) -> Result<Self, String> {
        let method = match spec.method.to_ascii_uppercase().as_str() {
            "GET" => Method::GET,
            "POST" => Method::POST,
            "PUT" => Method::PUT,
            "PATCH" => Method::PATCH,
            "DELETE" => Method::DELETE,
            _ => return Err(format!("unsupported HTTP method `{}`: use GET, POST, PUT, PATCH or DELETE", spec.method)),
        };
        if !spec.path.starts_with('/') {
            return Err(format!("path `{}` must start with `/`", spec.path));
        }
        let tmpl = |s: &String| StrTemplate::compile(s).map_err(|e: TemplateError| e.to_string());
        let pairs = |m: &std::collections::BTreeMap<String, String>| {
            m.iter().map(|(k, v)| Ok((k.clone(), tmpl(v)?))).collect::<Result<Vec<_>, String>>()
        };
        Ok(Self {
            role,
            method,
            path: tmpl(&spec.path)?,
            query: pairs(&spec.query)?,
            headers: pairs(&spec.headers)?,
            body: spec.body.as_ref().map(ValueTemplate::compile).transpose().map_err(|e| e.to_string())?,
            encoding: spec.encoding,
            id_from: spec.id_from,
            result: spec
                .result
                .as_deref()
                .map(super::pointer::Pointer::parse)
                .transpose()
                .map_err(|e| e.to_string())?,
            ok_statuses: spec.ok_statuses.clone(),
            when: spec.when.as_deref().map(Expr::compile).transpose().map_err(|e| e.to_string())?,
        })
    }

    /// Renders the call with `ctx`; `common_headers` come first so a call's own headers win.
    pub fn render(
        &self,
        ctx: &Context,
        common_headers: &[(String, StrTemplate)],
        extra_query: &[(String, StrTemplate)],
    ) -> Result<AppRequest, TemplateError> {
        let mut query = Vec::with_capacity(self.query.len() + extra_query.len());
        for (k, t) in self.query.iter().chain(extra_query) {
            let v = t.render(ctx, Escape::None)?;
            // An optional parameter whose template renders empty is left out; a literal `""` is sent
            // (some apps need `status=` to list everything).
            if !v.is_empty() || t.is_literal() {
                query.push((k.clone(), v));
            }
        }
        let mut headers = Vec::with_capacity(common_headers.len() + self.headers.len());
        for (k, t) in common_headers.iter().chain(&self.headers) {
            headers.push((k.clone(), t.render(ctx, Escape::None)?));
        }
        Ok(AppRequest {
            call: self.role,
            method: self.method.clone(),
            path: self.path.render(ctx, Escape::PathSegment)?,
            query,
            headers,
            body: match &self.body {
                Some(b) => {
                    let v = b.render(ctx)?;
                    Some(match self.encoding {
                        BodyEncoding::Json => Body::Json(v),
                        BodyEncoding::Form => Body::Form(form_fields(&v)),
                    })
                }
                None => None,
            },
        })
    }

    /// Whether the call is to be made in this context (`when`, truthy; no `when`: always).
    pub fn applies(&self, ctx: &Context) -> Result<bool, TemplateError> {
        let Some(w) = &self.when else { return Ok(true) };
        Ok(match w.eval(ctx)? {
            Value::Bool(b) => b,
            Value::Null => false,
            Value::String(s) => !s.is_empty(),
            Value::Number(n) => n.as_f64() != Some(0.0),
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
        })
    }

    /// The object this call answered with: the `result` pointer, or the whole body.
    pub fn result_of<'a>(&self, body: &'a Value) -> Option<&'a Value> {
        match &self.result {
            Some(p) => p.get(body),
            None => Some(body),
        }
    }
}
