//! Tenants at run time: each tenant file compiled with its mapping into a ready [`Tenant`], and the
//! [`Registry`] that routes a request's tenant id to it.
//!
//! Everything per tenant that does not depend on a request is computed here, once: token hashes,
//! the compiled mapping, the backend client and pool, and the discovery documents. Outbound
//! limiters belong to app instances rather than tenants: tenants with the same `base_url` share
//! one, and a reload hands it on to the new registry.

pub mod auth;
pub mod edit;
pub mod scope;
pub mod spec;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::auth::Authenticator;
use crate::backend::{Auth, Backend, Limiter, OAuth2, OutboundLimit, TokenCache};
use crate::config::{ConfigSet, Problem, Problems};
use crate::mapping::{self, Mapping, ResourceKind};
use crate::ratelimit::SharedLimiter;
use spec::{TenantFile, TenantOptions};

/// Route segments a tenant may not take, because the admin listener or future routes use them.
pub const RESERVED_IDS: &[&str] = &["healthz", "readyz", "metrics", "admin", "api", "scim", "oauth", "static", "v2"];

/// Default per-attempt timeout of app calls.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Checks a tenant id: 1–63 of `a-z 0-9 -`, starting with a letter or digit, not reserved.
pub fn validate_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-');
    if !ok {
        return Err(format!("tenant id `{id}` must be 1-63 characters of a-z, 0-9 and `-`, not starting with `-`"));
    }
    if RESERVED_IDS.contains(&id) {
        return Err(format!("tenant id `{id}` is reserved"));
    }
    Ok(())
}

/// A tenant, ready to serve.
#[derive(Debug)]
pub struct Tenant {
    pub id: String,
    /// `id` as shared text, for metric labels and span attributes: each takes a reference.
    pub label: Arc<str>,
    pub mapping: Arc<Mapping>,
    pub backend: Backend,
    /// `credentials.*` for templates.
    pub credentials: Value,
    /// Who may call: static tokens, JWTs, the OAuth token endpoint.
    pub auth: Authenticator,
    pub options: TenantOptions,
    /// Inbound rate limits.
    pub limits: Arc<crate::ratelimit::RateLimits>,
    /// Per resource type: the part of a shared app instance that is this tenant's.
    pub scopes: std::collections::BTreeMap<mapping::ResourceKind, scope::Scope>,
}

impl Tenant {
    /// The mapping of a resource type this tenant serves.
    pub fn resource(&self, kind: ResourceKind) -> Option<&mapping::ResourceMapping> {
        self.mapping.resource(kind)
    }

    /// This tenant's scope in a shared app instance, for `kind`.
    pub fn scope(&self, kind: ResourceKind) -> Option<&scope::Scope> {
        self.scopes.get(&kind)
    }
}

/// All tenants, by id.
#[derive(Debug, Default)]
pub struct Registry {
    tenants: HashMap<String, Arc<Tenant>>,
    /// Outbound limiters by app instance (normalised base URL).
    limiters: HashMap<String, Arc<Limiter>>,
    /// What this process shares with other replicas, if it has any.
    shared: Option<Shared>,
}

/// What replicas share beyond the store (both Redis): the outbound rate schedules of app
/// instances and the OAuth tokens of apps.
#[derive(Clone)]
pub struct Shared {
    pub limits: Arc<dyn SharedLimiter>,
    pub tokens: Arc<dyn TokenCache>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared")
    }
}

impl Registry {
    /// The tenant with `id`.
    pub fn get(&self, id: &str) -> Option<&Arc<Tenant>> {
        self.tenants.get(id)
    }

    /// Number of tenants.
    pub fn len(&self) -> usize {
        self.tenants.len()
    }

    /// Whether there are no tenants.
    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }

    /// Tenant ids, sorted.
    pub fn ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.tenants.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids
    }

    /// Keeps every outbound rate and app token (now and after reloads) in `shared`, with the
    /// other replicas.
    pub fn share_with_replicas(&mut self, shared: Shared) {
        self.share(&shared);
        self.shared = Some(shared);
    }

    fn share(&self, shared: &Shared) {
        for l in self.limiters.values() {
            l.share(shared.limits.clone());
        }
        for t in self.tenants.values() {
            if let Some(oauth) = t.backend.oauth() {
                oauth.share(shared.tokens.clone());
            }
        }
    }

    /// Compiles every mapping once and every tenant against it; reports all problems together.
    pub fn build(set: &ConfigSet) -> Result<Self, Problems> {
        Self::build_after(set, None)
    }

    /// [`Registry::build`] for a reload: an app instance `previous` already limits keeps its
    /// limiter (and so its schedule, taking the new values), so a reload neither resets nor
    /// doubles its rate. Nothing of `previous` changes unless the new configuration is valid.
    pub fn rebuild(set: &ConfigSet, previous: &Registry) -> Result<Self, Problems> {
        Self::build_after(set, Some(previous))
    }

    fn build_after(set: &ConfigSet, previous: Option<&Registry>) -> Result<Self, Problems> {
        let mut problems = Vec::new();
        let mut mappings: HashMap<&str, Arc<Mapping>> = HashMap::new();
        for (name, (path, file)) in &set.mappings {
            match mapping::compile(file) {
                Ok(m) => {
                    mappings.insert(name.as_str(), Arc::new(m));
                }
                Err(errs) => {
                    problems.extend(Problem::located(path, errs.into_iter().map(|e| (e.location, e.message, e.hint))));
                }
            }
        }
        let mut built: Vec<(PathBuf, Tenant, Option<OutboundLimit>)> = Vec::new();
        for (path, file) in &set.tenants {
            match build_tenant(path, file, &mappings, set) {
                Ok((t, limit)) => {
                    if built.iter().any(|(_, other, _)| other.id == t.id) {
                        problems.push(Problem::file(path, format!("tenant id `{}` is used by another file", t.id)));
                    } else {
                        built.push((path.clone(), t, limit));
                    }
                }
                Err(mut p) => problems.append(&mut p),
            }
        }
        // One limit per app instance: its tenants must agree on it.
        let mut instances: HashMap<String, (&str, Option<OutboundLimit>)> = HashMap::new();
        for (path, t, limit) in &built {
            match instances.get(&t.backend.instance()) {
                None => {
                    instances.insert(t.backend.instance(), (t.id.as_str(), *limit));
                }
                Some((first, first_limit)) if first_limit != limit => {
                    let key = set
                        .tenants
                        .iter()
                        .find(|(p, _)| p == path)
                        .map(|(_, f)| match (&f.backend.rate_limit, f.backend.max_in_flight) {
                            (Some(_), _) => "backend.rate_limit",
                            (None, Some(_)) => "backend.max_in_flight",
                            (None, None) => "backend.base_url",
                        })
                        .unwrap_or("backend");
                    let message = format!(
                        "tenant `{}` calls the same `base_url` as tenant `{first}` with another \
                         `backend.rate_limit` / `backend.max_in_flight`",
                        t.id
                    );
                    let hint = "tenants of one app instance share its outbound limit: give them the same values";
                    problems.extend(Problem::located(path, [(key.to_owned(), message, Some(hint.to_owned()))]));
                }
                Some(_) => {}
            }
        }
        if !problems.is_empty() {
            return Err(Problems(problems));
        }
        // Valid as a whole: only now may a running limiter take new values.
        let mut limiters = HashMap::new();
        for (instance, (_, limit)) in instances {
            let Some(limit) = limit.filter(OutboundLimit::is_limited) else { continue };
            let limiter = match previous.and_then(|p| p.limiters.get(&instance)) {
                Some(running) => {
                    running.reconfigure(limit);
                    running.clone()
                }
                None => Arc::new(Limiter::new(&instance, limit)),
            };
            limiters.insert(instance, limiter);
        }
        let mut tenants = HashMap::new();
        for (_, mut t, _) in built {
            if let Some(l) = limiters.get(&t.backend.instance()) {
                t.backend.set_limiter(l.clone());
            }
            // Unchanged inbound limits keep their state: a reload must not hand out a fresh burst.
            if let Some(running) = previous.and_then(|p| p.get(&t.id)).filter(|p| p.limits.spec() == t.limits.spec()) {
                t.limits = running.limits.clone();
            }
            tenants.insert(t.id.clone(), Arc::new(t));
        }
        let registry = Self { tenants, limiters, shared: previous.and_then(|p| p.shared.clone()) };
        if let Some(shared) = &registry.shared {
            registry.share(shared);
        }
        Ok(registry)
    }
}

/// A tenant and the outbound limit its file asks for (attached once all tenants agree on it).
fn build_tenant(
    path: &Path,
    file: &TenantFile,
    mappings: &HashMap<&str, Arc<Mapping>>,
    set: &ConfigSet,
) -> Result<(Tenant, Option<OutboundLimit>), Vec<Problem>> {
    let mut problems = Vec::new();
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    if let Err(m) = validate_id(&file.id) {
        problems.push(Problem::file(path, m));
    } else if stem != file.id {
        problems.push(
            Problem::file(path, format!("`id: {}` must match the file name `{stem}`", file.id))
                .hint(format!("rename the file to `{}.yaml`", file.id)),
        );
    }
    let mapping = match mappings.get(file.mapping.as_str()) {
        Some(m) => Some(m.clone()),
        None => {
            // A mapping that exists but failed to compile was already reported.
            if !set.mappings.contains_key(&file.mapping) {
                let known: Vec<&str> = set.mappings.keys().map(String::as_str).collect();
                problems.push(
                    Problem::file(path, format!("mapping `{}` does not exist", file.mapping))
                        .hint(format!("known mappings: {}", known.join(", "))),
                );
            }
            None
        }
    };
    let authenticator = match auth::compile(&file.id, &file.auth) {
        Ok(a) => Some(a),
        Err(errs) => {
            problems.extend(Problem::located(path, errs.into_iter().map(|(at, message)| (at, message, None))));
            None
        }
    };
    let timeout = file
        .backend
        .timeout_ms
        .map(Duration::from_millis)
        .or(mapping.as_ref().and_then(|m| m.timeout))
        .unwrap_or(DEFAULT_TIMEOUT);
    let credentials: Map<String, Value> =
        file.backend.credentials.iter().map(|(k, v)| (k.clone(), Value::String(v.0.clone()))).collect();
    let credentials = Value::Object(credentials);
    let auth = match mapping.as_ref().and_then(|m| m.auth.as_ref()).map(|a| render_auth(a, &credentials)).transpose() {
        Ok(a) => a.unwrap_or(Auth::None),
        Err(m) => {
            problems.push(Problem::file(path, format!("backend auth: {m}")));
            Auth::None
        }
    };
    let backend = match Backend::new(&file.backend.base_url.0, timeout, auth) {
        Ok(mut b) => {
            b.set_app(&file.mapping);
            Some(b)
        }
        Err(e) => {
            problems.push(Problem::file(path, format!("backend: {e}")));
            None
        }
    };
    let b = &file.backend;
    let outbound = OutboundLimit::new(
        b.rate_limit.as_ref().map(|r| (r.per_second, r.burst)),
        b.rate_limit.as_ref().and_then(|r| r.max_wait_ms).map(Duration::from_millis),
        b.max_in_flight,
    )
    .map_err(|errors| {
        problems.extend(Problem::located(
            path,
            errors.into_iter().map(|e| (format!("backend.{}", e.key), e.message, None)),
        ));
    })
    .ok()
    .filter(OutboundLimit::is_limited);
    let limits = Arc::new(crate::ratelimit::RateLimits::new(&file.limits).unwrap_or_else(|m| {
        problems.push(Problem::file(path, format!("limits: {m}")));
        crate::ratelimit::RateLimits::default()
    }));
    let scopes = match mapping.as_ref().map(|m| scope::compile(&file.scope, m)) {
        Some(Ok(s)) => s,
        Some(Err(errs)) => {
            problems.extend(Problem::located(path, errs.into_iter().map(|(at, message)| (at, message, None))));
            Default::default()
        }
        None => Default::default(),
    };
    match (mapping, backend, authenticator) {
        (Some(mapping), Some(backend), Some(auth)) if problems.is_empty() => Ok((
            Tenant {
                id: file.id.clone(),
                label: Arc::from(file.id.as_str()),
                mapping,
                backend,
                credentials,
                auth,
                scopes,
                options: file.options.clone(),
                limits,
            },
            outbound,
        )),
        _ => Err(problems),
    }
}

/// Renders a mapping's auth templates with a tenant's credentials, once, at load.
fn render_auth(t: &mapping::AuthTemplate, credentials: &Value) -> Result<Auth, String> {
    use mapping::AuthTemplate;
    use mapping::template::{Context, Escape, StrTemplate};
    let ctx = Context::new([("credentials", credentials)]);
    let r = |s: &StrTemplate| s.render(&ctx, Escape::None).map_err(|e| e.to_string());
    let required = |s: &StrTemplate, what: &str| {
        let v = r(s)?;
        if v.is_empty() { Err(format!("`{what}` renders empty: is the credential set?")) } else { Ok(v) }
    };
    Ok(match t {
        AuthTemplate::Basic { username, password } => {
            Auth::Basic { username: required(username, "username")?, password: r(password)? }
        }
        AuthTemplate::Bearer(token) => Auth::Bearer(required(token, "token")?),
        AuthTemplate::OAuth2 { token_url, client_id, client_secret, scope, audience } => Auth::OAuth2(OAuth2::new(
            required(token_url, "token_url")?,
            required(client_id, "client_id")?,
            required(client_secret, "client_secret")?,
            scope.as_ref().map(r).transpose()?.filter(|s| !s.is_empty()),
            audience.as_ref().map(r).transpose()?.filter(|s| !s.is_empty()),
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids() {
        assert!(validate_id("acme-1").is_ok());
        for bad in ["", "-a", "Acme", "a_b", "healthz", "a/b", &"a".repeat(64)] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }
}
