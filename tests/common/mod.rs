//! Test harness: runs the real `scimbridge` binary (and the demo app) as child processes on
//! loopback ports chosen by the OS, and talks to both over HTTP.
#![allow(dead_code)]

pub mod certs;
pub mod legacy;
pub mod redis;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::Value;

/// The development token of the demo tenant.
pub const TOKEN: &str = "demo-token";
pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_scimbridge")
}

/// The lines a child process wrote to stderr (its log), kept for assertions and echoed.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<String>>>);

impl Logs {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        self.0.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// How many lines so far contain all of `needles`.
    pub fn count(&self, needles: &[&str]) -> usize {
        self.0.lock().map(|l| l.iter().filter(|line| needles.iter().all(|n| line.contains(n))).count()).unwrap_or(0)
    }

    /// Waits until at least `n` lines contain all of `needles`; false on timeout.
    pub async fn wait_for(&self, needles: &[&str], n: usize, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.count(needles) >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

/// A child process killed on drop (after its stop signal, if it has one).
pub struct Proc {
    child: Child,
    /// What it wrote to stdout (for programs started with an announcement on it).
    stdout: Logs,
    /// Sent first on drop, for programs whose own children outlive a SIGKILL (nginx's workers).
    stop: Option<&'static str>,
}

impl Proc {
    /// Starts `cmd` and waits for one stdout line per `prefix`, returning the rest of each line.
    fn start(cmd: Command, prefixes: &[&str]) -> (Self, Vec<String>) {
        Self::start_logged(cmd, prefixes, None)
    }

    /// Like `start`; with `logs`, stderr is also collected there.
    fn start_logged(mut cmd: Command, prefixes: &[&str], logs: Option<Logs>) -> (Self, Vec<String>) {
        cmd.stdout(Stdio::piped()).stderr(if logs.is_some() { Stdio::piped() } else { Stdio::inherit() });
        let mut child = cmd.spawn().expect("spawn scimbridge");
        if let (Some(logs), Some(stderr)) = (logs, child.stderr.take()) {
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    eprintln!("{line}");
                    if let Ok(mut l) = logs.0.lock() {
                        l.push(line);
                    }
                }
            });
        }
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        let out = Logs::default();
        let keep = out.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(mut l) = keep.0.lock() {
                    l.push(line.clone());
                }
                // The announcements are awaited; the rest is kept above.
                let _ = tx.send(line);
            }
        });
        let mut found = vec![String::new(); prefixes.len()];
        let mut missing = prefixes.len();
        while missing > 0 {
            let line = rx.recv_timeout(Duration::from_secs(30)).expect("process did not announce its address");
            for (i, p) in prefixes.iter().enumerate() {
                if let Some(rest) = line.strip_prefix(p)
                    && found[i].is_empty()
                {
                    found[i] = rest.trim().to_owned();
                    missing -= 1;
                }
            }
        }
        (Self { child, stdout: out, stop: None }, found)
    }

    /// Starts a program that announces nothing on stdout (a load balancer), collecting its stderr
    /// in `logs`. On drop it gets `stop` (e.g. `QUIT`) and up to 5 s to exit before SIGKILL.
    pub fn spawn(mut cmd: Command, logs: Logs, stop: &'static str) -> Self {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {:?}: {e}", cmd.get_program()));
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                if let Ok(mut l) = logs.0.lock() {
                    l.push(line);
                }
            }
        });
        Self { child, stdout: Logs::default(), stop: Some(stop) }
    }

    /// Its stdout lines so far.
    pub fn stdout(&self) -> &Logs {
        &self.stdout
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends a signal (`TERM`, `HUP`, …) to the process.
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill").args(["-s", name, &self.pid().to_string()]).status().expect("run kill");
        assert!(ok.success(), "kill -s {name}");
    }

    /// Waits for the process to exit on its own; `None` if it is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(signal) = self.stop
            && matches!(self.child.try_wait(), Ok(None))
        {
            let _ = Command::new("kill").args(["-s", signal, &self.pid().to_string()]).status();
            let _ = self.wait_exit(Duration::from_secs(5));
        }
        self.kill();
    }
}

/// The demo app alone.
pub struct DemoApp {
    pub proc: Proc,
    pub url: String,
    pub api_key: String,
    http: reqwest::Client,
}

impl DemoApp {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// The demo app with extra command-line arguments (e.g. fault injection).
    pub fn start_with(args: &[&str]) -> Self {
        let api_key = format!("key-{}", uuid());
        let mut cmd = Command::new(binary());
        cmd.args(["demo-app", "--listen", "127.0.0.1:0"]).args(args).env("DEMO_APP_API_KEY", &api_key);
        let (proc, found) = Proc::start(cmd, &["demo-app listening on "]);
        Self { proc, url: found[0].clone(), api_key, http: reqwest::Client::new() }
    }

    /// GET on the app's own API; returns status and body.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        app_call(&self.http, &self.url, &self.api_key, Method::GET, path, None).await
    }

    /// POST on the app's own API.
    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        app_call(&self.http, &self.url, &self.api_key, Method::POST, path, Some(body)).await
    }
}

/// A call to the demo app's own API with its key.
async fn app_call(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let mut req = http.request(method, format!("{url}{path}")).header("X-Api-Key", key);
    if let Some(b) = body {
        req = req.json(b);
    }
    let r = req.send().await.expect("demo app reachable");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The `value`s of a group's `members`, sorted.
pub fn member_values(group: &Value) -> Vec<String> {
    let mut v: Vec<String> = group["members"]
        .as_array()
        .map(|m| m.iter().map(|e| e["value"].as_str().unwrap_or_default().to_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// A sorted copy.
pub fn sorted<T: Ord + Clone>(v: &[T]) -> Vec<T> {
    let mut v = v.to_vec();
    v.sort();
    v
}

/// A running gateway and the demo app behind it.
pub struct Gateway {
    pub proc: Proc,
    /// Its log, when started with `serve_with`.
    pub logs: Logs,
    /// `http://127.0.0.1:port`
    pub url: String,
    /// The admin listener's `http://127.0.0.1:port`, when started with `--admin-listen`.
    pub admin_url: Option<String>,
    pub app: Option<DemoApp>,
    /// The app URL and key when the app runs inside the gateway process (`demo`).
    pub app_url: String,
    pub app_key: String,
    http: reqwest::Client,
}

/// A SCIM answer.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn id(&self) -> String {
        self.body["id"].as_str().expect("id in body").to_owned()
    }
}

pub fn uuid() -> String {
    format!("{:032x}", rand_u128())
}

fn rand_u128() -> u128 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let a = RandomState::new().build_hasher().finish() as u128;
    let mut h = RandomState::new().build_hasher();
    h.write_u128(a);
    (a << 64) | h.finish() as u128
}

impl Gateway {
    /// `scimbridge demo` with the repository's config: demo app and gateway in one process.
    pub fn demo() -> Self {
        let api_key = format!("key-{}", uuid());
        let mut cmd = Command::new(binary());
        cmd.current_dir(repo_root())
            .args(["demo", "--listen", "127.0.0.1:0", "--app-listen", "127.0.0.1:0"])
            .env("DEMO_APP_API_KEY", &api_key);
        let (proc, found) = Proc::start(cmd, &["scimbridge listening on ", "demo-app listening on "]);
        Self {
            proc,
            logs: Logs::default(),
            url: found[0].clone(),
            admin_url: None,
            app: None,
            app_url: found[1].clone(),
            app_key: api_key,
            http: reqwest::Client::new(),
        }
    }

    /// `scimbridge serve` on `config` with the store under `data`, fronting `app`.
    pub fn serve(config: &Path, data: &Path, app: DemoApp) -> Self {
        Self::serve_with(config, data, app, &[], &[], reqwest::Client::new())
    }

    /// `scimbridge serve` with extra arguments and environment (TLS, connection limits), talking
    /// to it through `http` (e.g. a client that trusts the test CA).
    pub fn serve_with(
        config: &Path,
        data: &Path,
        app: DemoApp,
        args: &[&str],
        env: &[(&str, &str)],
        http: reqwest::Client,
    ) -> Self {
        Self::launch(config, data, args, env, Some(&app), http).with_app(app)
    }

    /// The one way the harness starts `scimbridge serve`: on a free loopback port, fronting `app`
    /// when given, its log kept in `logs` (and still printed).
    fn launch(
        config: &Path,
        data: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        app: Option<&DemoApp>,
        http: reqwest::Client,
    ) -> Self {
        let mut cmd = Command::new(binary());
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(config)
            .arg("--data-dir")
            .arg(data)
            .args(args)
            .envs(env.iter().copied());
        if let Some(app) = app {
            cmd.env("DEMO_APP_URL", &app.url).env("DEMO_APP_API_KEY", &app.api_key);
        }
        let logs = Logs::default();
        let admin = args.contains(&"--admin-listen");
        let prefixes: &[&str] = if admin {
            &["scimbridge listening on ", "scimbridge admin listening on "]
        } else {
            &["scimbridge listening on "]
        };
        let (proc, found) = Proc::start_logged(cmd, prefixes, Some(logs.clone()));
        let (app_url, app_key) = app.map(|a| (a.url.clone(), a.api_key.clone())).unwrap_or_default();
        let admin_url = found.get(1).cloned();
        Self { proc, logs, url: found[0].clone(), admin_url, app: None, app_url, app_key, http }
    }

    /// `host:port` of the gateway's listener.
    pub fn addr(&self) -> String {
        self.url.split("://").nth(1).expect("scheme://addr").to_owned()
    }

    /// `scimbridge serve` on `config` with the store under `data` and extra environment (for tenants
    /// whose app the test started itself).
    pub fn serve_env(config: &Path, data: &Path, env: &[(&str, &str)]) -> Self {
        Self::launch(config, data, &[], env, None, reqwest::Client::new())
    }

    /// `scimbridge serve` fronting an app the test keeps itself (several gateways may share it),
    /// with extra arguments (e.g. a shared store).
    pub fn serve_shared(config: &Path, data: &Path, app: &DemoApp, args: &[&str]) -> Self {
        Self::launch(config, data, args, &[], Some(app), reqwest::Client::new())
    }

    /// The gateways behind a front end (a load balancer run by `proc`) at `url`, as one client
    /// sees them, with the demo app they share for app-side checks.
    pub fn behind(proc: Proc, logs: Logs, url: String, app: &DemoApp) -> Self {
        Self {
            proc,
            logs,
            url,
            admin_url: None,
            app: None,
            app_url: app.url.clone(),
            app_key: app.api_key.clone(),
            http: reqwest::Client::new(),
        }
    }

    /// Keeps `app` alive with this gateway (for gateways started with [`Gateway::serve_env`]).
    pub fn with_app(mut self, app: DemoApp) -> Self {
        self.app_url = app.url.clone();
        self.app_key = app.api_key.clone();
        self.app = Some(app);
        self
    }

    /// A tenant's SCIM base URL.
    pub fn tenant_base(&self, tenant: &str) -> String {
        format!("{}/{tenant}/scim/v2", self.url)
    }

    /// The demo tenant's SCIM base URL.
    pub fn base(&self) -> String {
        format!("{}/demo/scim/v2", self.url)
    }

    /// A SCIM request to the demo tenant with the development token.
    pub async fn scim(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        self.scim_as(TOKEN, method, path, body, &[]).await
    }

    /// A SCIM request with a chosen token and extra headers.
    pub async fn scim_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let url = if path.starts_with("http") { path.to_owned() } else { format!("{}{path}", self.base()) };
        let mut req = self.http.request(method, url).bearer_auth(token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.header("Content-Type", "application/scim+json").body(b.to_string());
        }
        let r = req.send().await.expect("gateway reachable");
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_default();
        let body =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        Resp { status, headers, body }
    }

    /// GET on the demo app's own API.
    pub async fn app_get(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.app_url))
            .header("X-Api-Key", &self.app_key)
            .send()
            .await
            .expect("app");
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The demo app's record of `/api` requests (its test hook `/_stats/arrivals`): each request's
    /// arrival in microseconds since the app started, method and path, in order; and the most
    /// requests it handled at once.
    pub async fn app_arrivals(&self) -> (Vec<(u64, String, String)>, u64) {
        let (s, v) = self.app_get("/_stats/arrivals").await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["dropped"], 0, "arrivals were dropped");
        let arrivals = v["arrivals"]
            .as_array()
            .expect("arrivals")
            .iter()
            .map(|a| {
                let at = a["at_us"].as_u64().expect("at_us");
                (
                    at,
                    a["method"].as_str().unwrap_or_default().to_owned(),
                    a["path"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        (arrivals, v["max_in_flight"].as_u64().expect("max_in_flight"))
    }

    /// The demo app's account behind a SCIM user, found by login.
    pub async fn app_account(&self, login: &str) -> Value {
        let (s, v) = self.app_get(&format!("/api/v1/accounts?login={}", urlencode(login))).await;
        assert_eq!(s, 200, "{v}");
        let list = v["accounts"].as_array().expect("accounts");
        assert_eq!(list.len(), 1, "exactly one account `{login}` in the app: {v}");
        list[0].clone()
    }

    /// The demo app's team found by name.
    pub async fn app_team(&self, name: &str) -> Value {
        let (s, v) = self.app_get(&format!("/api/v1/teams?name={}", urlencode(name))).await;
        assert_eq!(s, 200, "{v}");
        let list = v["teams"].as_array().expect("teams");
        assert_eq!(list.len(), 1, "exactly one team `{name}` in the app: {v}");
        list[0].clone()
    }

    /// App ids of a team's members, by team name.
    pub async fn app_members(&self, name: &str) -> Vec<u64> {
        let team = self.app_team(name).await;
        let (_, v) = self.app_get(&format!("/api/v1/teams/{}/members?limit=1000", team["id"])).await;
        v["members"].as_array().expect("members").iter().map(|m| m["account_id"].as_u64().expect("id")).collect()
    }

    /// Creates a user the way Entra does; returns the response.
    pub async fn entra_create_user(&self, user_name: &str) -> Resp {
        let body = serde_json::json!({
            "schemas": [USER, ENTERPRISE],
            "externalId": format!("ext-{user_name}"),
            "userName": user_name,
            "active": true,
            "emails": [{"primary": true, "type": "work", "value": user_name}],
            "meta": {"resourceType": "User"},
            "name": {"formatted": "Given Family", "familyName": "Family", "givenName": "Given"},
            "roles": []
        });
        self.scim(Method::POST, "/Users", Some(body)).await
    }

    /// Creates a group the way Entra does.
    pub async fn entra_create_group(&self, name: &str) -> Resp {
        let body = serde_json::json!({
            "schemas": [GROUP, "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
            "externalId": format!("ext-{name}"),
            "displayName": name,
            "meta": {"resourceType": "Group"}
        });
        self.scim(Method::POST, "/Groups", Some(body)).await
    }
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A PatchOp body.
pub fn patch(ops: Value) -> Value {
    serde_json::json!({"schemas": [PATCH_OP], "Operations": ops})
}

/// A config directory with the repository's demo tenant and mapping (the app from the environment).
pub fn demo_config() -> PathBuf {
    let dir = temp_dir("config");
    for (sub, file) in [("tenants", "demo.yaml"), ("mappings", "demo-app.yaml")] {
        std::fs::create_dir_all(dir.join(sub)).expect("config dir");
        std::fs::copy(repo_root().join(sub).join(file), dir.join(sub).join(file)).expect("copy config");
    }
    dir
}

/// A fresh temporary directory.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("scimbridge-test-{name}-{}", uuid()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

// ---------------------------------------------------------------------------------------------
// Helpers for the behaviour suites (entra_users, entra_groups, okta, protocol).
// ---------------------------------------------------------------------------------------------

/// URN of RFC 7644 §3.12 error bodies.
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
/// URN of RFC 7644 §3.4.2 list responses.
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// URN of RFC 7644 §3.4.3 search requests.
pub const SEARCH_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
/// URN of RFC 7644 §3.7 bulk requests.
pub const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
/// URN of RFC 7644 §3.7 bulk responses.
pub const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";
/// The extra group schema Entra declares on `POST /Groups`.
pub const MS_GROUP: &str = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group";

impl Resp {
    /// Asserts the HTTP status; the failure message shows `what` and the whole body.
    #[track_caller]
    pub fn expect(&self, status: u16, what: &str) -> &Self {
        assert_eq!(self.status.as_u16(), status, "{what}: unexpected status; body: {:#}", self.body);
        self
    }

    /// Asserts a status among `statuses` (e.g. PATCH may answer 200 or 204).
    #[track_caller]
    pub fn expect_one_of(&self, statuses: &[u16], what: &str) -> &Self {
        assert!(
            statuses.contains(&self.status.as_u16()),
            "{what}: status {} is not one of {statuses:?}; body: {:#}",
            self.status,
            self.body
        );
        self
    }

    /// Asserts an RFC 7644 §3.12 error: the status, the Error schema, `status` as a string in the
    /// body, and the `scimType` when one is given.
    #[track_caller]
    pub fn expect_error(&self, status: u16, scim_type: Option<&str>, what: &str) -> &Self {
        self.expect(status, what);
        assert_eq!(self.body["schemas"], serde_json::json!([ERROR]), "{what}: Error schema; body: {:#}", self.body);
        assert_eq!(self.body["status"], status.to_string(), "{what}: `status` in the body; body: {:#}", self.body);
        if let Some(t) = scim_type {
            assert_eq!(self.body["scimType"], t, "{what}: scimType; body: {:#}", self.body);
        }
        self
    }

    /// The `Resources` of a ListResponse (empty when the member is absent, as RFC 7644 allows
    /// for an empty result).
    pub fn resources(&self) -> Vec<Value> {
        self.body["Resources"].as_array().cloned().unwrap_or_default()
    }

    /// The `id`s of a ListResponse's resources, in order.
    pub fn resource_ids(&self) -> Vec<String> {
        self.resources().iter().map(|r| r["id"].as_str().unwrap_or_default().to_owned()).collect()
    }

    /// `totalResults` of a ListResponse.
    pub fn total(&self) -> u64 {
        self.body["totalResults"].as_u64().unwrap_or_else(|| panic!("totalResults in {:#}", self.body))
    }

    /// The `ETag` header, if any.
    pub fn etag(&self) -> Option<String> {
        self.headers.get("etag").and_then(|v| v.to_str().ok()).map(str::to_owned)
    }
}

/// Whether a value read back from SCIM counts as "empty": absent, `null` or `""`.
pub fn is_empty(v: &Value) -> bool {
    v.is_null() || v.as_str() == Some("")
}

impl Gateway {
    /// `GET` on the demo tenant.
    pub async fn get(&self, path: &str) -> Resp {
        self.scim(Method::GET, path, None).await
    }

    /// `PATCH /Users/{id}` with these operations.
    pub async fn patch_user(&self, id: &str, ops: Value) -> Resp {
        self.scim(Method::PATCH, &format!("/Users/{id}"), Some(patch(ops))).await
    }

    /// `PATCH /Groups/{id}` with these operations.
    pub async fn patch_group(&self, id: &str, ops: Value) -> Resp {
        self.scim(Method::PATCH, &format!("/Groups/{id}"), Some(patch(ops))).await
    }

    /// `GET /{endpoint}?filter=…` with the filter URL-encoded, plus extra raw query text (`&…`).
    pub async fn filter(&self, endpoint: &str, filter: &str, extra: &str) -> Resp {
        self.get(&format!("/{endpoint}?filter={}{extra}", urlencode(filter))).await
    }

    /// Creates a user the way Entra does and returns its SCIM id, asserting 201.
    pub async fn entra_user_id(&self, user_name: &str) -> String {
        let r = self.entra_create_user(user_name).await;
        r.expect(201, &format!("create user {user_name}"));
        r.id()
    }

    /// Creates a group the way Entra does and returns its SCIM id, asserting 201.
    pub async fn entra_group_id(&self, name: &str) -> String {
        let r = self.entra_create_group(name).await;
        r.expect(201, &format!("create group {name}"));
        r.id()
    }

    /// Creates a user the way Okta does (`password`, `groups: []`, `locale`); returns the response.
    pub async fn okta_create_user(&self, user_name: &str, given: &str, family: &str) -> Resp {
        let body = serde_json::json!({
            "schemas": [USER],
            "userName": user_name,
            "name": {"givenName": given, "familyName": family},
            "emails": [{"primary": true, "value": user_name, "type": "work"}],
            "displayName": format!("{given} {family}"),
            "locale": "en-US",
            "externalId": format!("okta-{user_name}"),
            "groups": [],
            "password": "1mz050nq",
            "active": true
        });
        self.scim_as(TOKEN, Method::POST, "/Users", Some(body), &[("User-Agent", "Okta SCIM Client 1.0.0")]).await
    }

    /// Creates a group the way Okta does (`members: []`).
    pub async fn okta_create_group(&self, name: &str) -> Resp {
        let body = serde_json::json!({"schemas": [GROUP], "displayName": name, "members": []});
        self.scim_as(TOKEN, Method::POST, "/Groups", Some(body), &[("User-Agent", "Okta SCIM Client 1.0.0")]).await
    }

    /// POST on the demo app's own API (to set up state the gateway did not create).
    pub async fn app_post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        app_call(&self.http, &self.app_url, &self.app_key, Method::POST, path, Some(body)).await
    }

    /// The demo app's accounts with this login (zero or one).
    pub async fn app_accounts(&self, login: &str) -> Vec<Value> {
        let (s, v) = self.app_get(&format!("/api/v1/accounts?login={}", urlencode(login))).await;
        assert_eq!(s, 200, "{v}");
        v["accounts"].as_array().expect("accounts").clone()
    }

    /// The demo app's teams with this name (zero or one).
    pub async fn app_teams(&self, name: &str) -> Vec<Value> {
        let (s, v) = self.app_get(&format!("/api/v1/teams?name={}", urlencode(name))).await;
        assert_eq!(s, 200, "{v}");
        v["teams"].as_array().expect("teams").clone()
    }

    /// The app id of the account with this login.
    pub async fn app_account_id(&self, login: &str) -> u64 {
        self.app_account(login).await["id"].as_u64().expect("numeric account id")
    }

    /// How many accounts the demo app holds.
    pub async fn app_account_count(&self) -> u64 {
        let (s, v) = self.app_get("/api/v1/accounts?limit=1").await;
        assert_eq!(s, 200, "{v}");
        v["paging"]["total"].as_u64().expect("paging.total")
    }

    /// How many teams the demo app holds.
    pub async fn app_team_count(&self) -> u64 {
        let (s, v) = self.app_get("/api/v1/teams?limit=1").await;
        assert_eq!(s, 200, "{v}");
        v["paging"]["total"].as_u64().expect("paging.total")
    }

    /// App ids of a team's members, sorted, by team name.
    pub async fn app_member_set(&self, name: &str) -> Vec<u64> {
        let mut m = self.app_members(name).await;
        m.sort_unstable();
        m
    }
}

/// An account without its `updated_at`, to compare "nothing else changed".
pub fn without_updated_at(mut account: Value) -> Value {
    if let Some(o) = account.as_object_mut() {
        o.remove("updated_at");
    }
    account
}

/// Checks that `times` (seconds, sorted) never exceed `burst + rate × window + tolerance` in any
/// window between two of them; returns the worst excess found (negative: room to spare).
pub fn worst_window_excess(times: &[f64], rate: f64, burst: f64, tolerance: f64) -> f64 {
    let mut worst = f64::MIN;
    for i in 0..times.len() {
        for j in i..times.len() {
            let count = (j - i + 1) as f64;
            worst = worst.max(count - (burst + rate * (times[j] - times[i]) + tolerance));
        }
    }
    worst
}

/// The times (seconds) at which the demo app received account creates, sorted.
pub fn create_arrivals(arrivals: &[(u64, String, String)]) -> Vec<f64> {
    arrivals
        .iter()
        .filter(|(_, m, p)| m == "POST" && p == "/api/v1/accounts")
        .map(|(t, _, _)| *t as f64 / 1e6)
        .collect()
}
