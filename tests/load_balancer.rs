//! The shape of `deploy/compose` on this machine: two `scimbridge serve` replicas sharing a Redis
//! store and one demo app, behind a real nginx running `deploy/compose/nginx.conf` itself (only the
//! replica addresses, the listen address and the access log path substituted). Needs nginx
//! (`/usr/sbin/nginx` or `SCIMBRIDGE_TEST_NGINX`; `.ci/run` installs Debian's) and a Redis server
//! (`SCIMBRIDGE_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`; `.ci/run` starts one).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

fn redis_url() -> String {
    std::env::var("SCIMBRIDGE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The nginx binary; the test fails, never skips, without one.
fn nginx_binary() -> PathBuf {
    if let Ok(p) = std::env::var("SCIMBRIDGE_TEST_NGINX") {
        return PathBuf::from(p);
    }
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect(
            "nginx is not installed: this test runs deploy/compose/nginx.conf in a real nginx. \
             Install Debian's package (`apt-get install nginx`; .ci/run does) or set SCIMBRIDGE_TEST_NGINX",
        )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// `deploy/compose/nginx.conf` with the compose names and paths replaced by this test's. Each
/// replaced text must be there exactly once, so the file that ships is the file tested.
fn nginx_site(a: &str, b: &str, listen: &str, access_log: &Path) -> String {
    let mut conf = std::fs::read_to_string(repo_root().join("deploy/compose/nginx.conf")).expect("nginx.conf");
    let subs = [
        ("server scimbridge-1:8080 ", format!("server {a} ")),
        ("server scimbridge-2:8080 ", format!("server {b} ")),
        ("listen 8080;", format!("listen {listen};")),
        (
            "access_log /var/log/nginx/access.log scimbridge;",
            format!("access_log {} scimbridge;", access_log.display()),
        ),
    ];
    for (from, to) in subs {
        assert_eq!(conf.matches(from).count(), 1, "deploy/compose/nginx.conf should contain `{from}` once");
        conf = conf.replace(from, &to);
    }
    conf
}

/// The main configuration around it, as in the official nginx image (which includes conf.d/ inside
/// `http`), with its paths under `dir`.
fn nginx_main(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "worker_processes 2;\npid {d}/nginx.pid;\nerror_log stderr notice;\nevents {{ worker_connections 512; }}\n\
         http {{\n  default_type application/octet-stream;\n  client_body_temp_path {d}/body;\n  \
         proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  \
         scgi_temp_path {d}/scgi;\n  include {d}/scimbridge.conf;\n}}\n"
    )
}

/// One line of nginx's access log in the shipped `scimbridge` format.
#[derive(Debug)]
struct Entry {
    method: String,
    path: String,
    status: u16,
    /// Every replica tried, in order.
    upstreams: Vec<String>,
    /// When the request ended, in ms since the epoch.
    msec: u64,
}

fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let at = line.find(key).unwrap_or_else(|| panic!("`{key}` in access log line {line}")) + key.len();
    let rest = &line[at..];
    match rest.strip_prefix('"') {
        Some(quoted) => &quoted[..quoted.find('"').expect("closing quote")],
        None => rest.split_whitespace().next().unwrap_or_default(),
    }
}

/// Two replicas behind nginx, sharing the demo app and a Redis store under a fresh prefix.
struct Stack {
    /// SCIM through nginx (its process), with the app for app-side checks.
    lb: Gateway,
    a: Gateway,
    b: Gateway,
    _app: DemoApp,
    access_log: PathBuf,
    prefix: String,
}

impl Drop for Stack {
    /// Leaves the shared Redis as it was found.
    fn drop(&mut self) {
        let script = format!(
            "redis-cli -u '{0}' --scan --pattern '{1}:*' | xargs -r redis-cli -u '{0}' del",
            redis_url(),
            self.prefix
        );
        let _ = Command::new("sh").args(["-c", &script]).stdout(std::process::Stdio::null()).status();
    }
}

impl Stack {
    async fn start(app_args: &[&str]) -> Self {
        let nginx = nginx_binary();
        let app = DemoApp::start_with(app_args);
        let config = demo_config();
        let prefix = format!("scimbridge-test-{}", uuid());
        let listen = format!("127.0.0.1:{}", free_port());
        let public = format!("http://{listen}");
        let store = redis_url();
        let args = ["--store", &store, "--store-prefix", &prefix, "--public-url", &public];
        let a = Gateway::serve_shared(&config, &temp_dir("lb-replica-a"), &app, &args);
        let b = Gateway::serve_shared(&config, &temp_dir("lb-replica-b"), &app, &args);
        let dir = temp_dir("nginx");
        let access_log = dir.join("access.log");
        std::fs::write(dir.join("scimbridge.conf"), nginx_site(&a.addr(), &b.addr(), &listen, &access_log))
            .expect("write site");
        std::fs::write(dir.join("nginx.conf"), nginx_main(&dir)).expect("write nginx.conf");
        let mut cmd = Command::new(&nginx);
        cmd.arg("-p").arg(&dir).arg("-c").arg(dir.join("nginx.conf")).args(["-e", "stderr", "-g", "daemon off;"]);
        let logs = Logs::default();
        // QUIT: nginx's graceful stop, which also ends its workers (a SIGKILL would orphan them).
        let mut proc = Proc::spawn(cmd, logs.clone(), "QUIT");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
        let start = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{public}/healthz")).send().await
                && r.status() == 200
            {
                break;
            }
            if let Some(status) = proc.wait_exit(Duration::from_millis(100)) {
                panic!("nginx exited ({status}) with this log:\n{}", logs.text());
            }
            assert!(start.elapsed() < Duration::from_secs(15), "nginx did not answer /healthz:\n{}", logs.text());
        }
        let lb = Gateway::behind(proc, logs, public, &app);
        Self { lb, a, b, _app: app, access_log, prefix }
    }

    /// nginx's access log so far.
    fn entries(&self) -> Vec<Entry> {
        let text = std::fs::read_to_string(&self.access_log).unwrap_or_default();
        text.lines()
            .map(|line| {
                let request = line.split('"').nth(1).unwrap_or_else(|| panic!("request in {line}"));
                let (method, path) = request.split_once(' ').expect("method and path");
                Entry {
                    method: method.to_owned(),
                    path: path.to_owned(),
                    status: field(line, "status=").parse().expect("status"),
                    upstreams: field(line, "upstream=").split(", ").map(str::to_owned).collect(),
                    msec: (field(line, "msec=").parse::<f64>().expect("msec") * 1000.0) as u64,
                }
            })
            .collect()
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

fn add(uid: &str) -> Value {
    json!([{"op": "Add", "path": "members", "value": [{"value": uid}]}])
}

fn remove(uid: &str) -> Value {
    json!([{"op": "Remove", "path": "members", "value": [{"value": uid}]}])
}

/// Entra's deactivation.
fn active_false() -> Value {
    json!([{"op": "Replace", "path": "active", "value": "False"}])
}

/// Entra's lifecycle through `gw`: users created and matched, one deactivated, a group with
/// members added and one removed, a user deleted; checked in the demo app. Names start `tag`.
async fn entra_lifecycle(gw: &Gateway, tag: &str) {
    let ada = format!("{tag}-ada@example.com");
    let grace = format!("{tag}-grace@example.com");
    let team = format!("{tag}-Engineering");
    // Test Connection, then match-or-create as Entra does.
    let none = gw.filter("Users", &format!("userName eq \"{ada}\""), "").await;
    none.expect(200, "Test Connection filter");
    assert_eq!(none.total(), 0);
    let created = gw.entra_create_user(&ada).await;
    created.expect(201, "create through nginx");
    let ada_id = created.id();
    let location = created.body["meta"]["location"].as_str().unwrap_or_default();
    assert!(location.starts_with(&gw.url), "meta.location names the load balancer: {location}");
    let grace_id = gw.entra_user_id(&grace).await;
    let found = gw.filter("Users", &format!("userName eq \"{ada}\""), "").await;
    assert_eq!(found.resource_ids(), vec![ada_id.clone()], "filter finds the created user");
    let by_ext = gw.filter("Users", &format!("externalId eq \"ext-{ada}\""), "").await;
    assert_eq!(by_ext.resource_ids(), vec![ada_id.clone()], "externalId filter");
    gw.patch_user(&ada_id, active_false()).await.expect_one_of(&[200, 204], "deactivate");
    assert_eq!(gw.get(&format!("/Users/{ada_id}")).await.body["active"], false);
    assert_eq!(gw.app_account(&ada).await["status"], "suspended", "deactivated in the app");
    let gid = gw.entra_group_id(&team).await;
    for uid in [&ada_id, &grace_id] {
        gw.patch_group(&gid, add(uid)).await.expect_one_of(&[200, 204], "member add");
    }
    let both = sorted(&[gw.app_account_id(&ada).await, gw.app_account_id(&grace).await]);
    assert_eq!(gw.app_member_set(&team).await, both, "both members in the app");
    gw.patch_group(&gid, remove(&ada_id)).await.expect_one_of(&[200, 204], "member remove");
    assert_eq!(gw.app_members(&team).await, vec![gw.app_account_id(&grace).await], "one member left");
    assert_eq!(member_values(&gw.get(&format!("/Groups/{gid}")).await.body), vec![grace_id.clone()]);
    gw.scim(Method::DELETE, &format!("/Users/{ada_id}"), None).await.expect(204, "delete");
    gw.get(&format!("/Users/{ada_id}")).await.expect(404, "deleted user");
    assert!(gw.app_accounts(&ada).await.is_empty(), "deleted in the app");
    assert_eq!(gw.app_account(&grace).await["status"], "active", "the other user untouched");
}

#[tokio::test]
async fn the_entra_lifecycle_through_nginx_is_served_by_both_replicas() {
    let stack = Stack::start(&[]).await;
    let health = reqwest::get(format!("{}/healthz", stack.lb.url)).await.expect("nginx answers");
    assert_eq!(health.status(), 200, "/healthz through nginx");
    assert_eq!(health.json::<Value>().await.unwrap(), json!({"status": "ok"}), "a replica's answer");
    entra_lifecycle(&stack.lb, "lb").await;

    let entries = stack.entries();
    let scim: Vec<&Entry> = entries.iter().filter(|e| e.path.starts_with("/demo/scim/v2/")).collect();
    assert!(scim.len() >= 14, "the lifecycle went through nginx: {entries:#?}");
    for (name, replica) in [("A", &stack.a), ("B", &stack.b)] {
        let served = scim.iter().filter(|e| e.upstreams == [replica.addr()]).count();
        assert!(served >= 3, "replica {name} served {served} of {} SCIM requests: {scim:#?}", scim.len());
    }
    assert!(scim.iter().all(|e| e.upstreams.len() == 1 && e.status < 500), "no failover was needed: {scim:#?}");
}

/// A create sent at once (SCIM's minimal user), answered with the login, status and body.
fn create(client: &reqwest::Client, base: &str, login: String) -> tokio::task::JoinHandle<(String, u16, Value)> {
    let (client, url) = (client.clone(), format!("{base}/Users"));
    tokio::spawn(async move {
        let body = json!({"schemas": [USER], "userName": login, "active": true});
        let r = client.post(url).bearer_auth(TOKEN).json(&body).send().await.expect("nginx answers");
        let status = r.status().as_u16();
        (login, status, r.json::<Value>().await.unwrap_or(Value::Null))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_mid_run_fails_no_idempotent_request_and_resends_no_write() {
    // Account creates answer 1.5 s after the account is committed, so creates are in flight when
    // the replica dies.
    let stack = Stack::start(&["--create-delay-ms", "1500"]).await;
    let (lb, a, b) = (&stack.lb, &stack.a, &stack.b);
    let reader = lb.entra_user_id("reader@example.com").await;
    let readers_group = lb.entra_group_id("Readers").await;
    lb.patch_group(&readers_group, add(&reader)).await.expect_one_of(&[200, 204], "member add");

    let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let base = lb.base();
    // Four creates at once: nginx's round robin sends two to each replica.
    let logins: Vec<String> = (0..4).map(|n| format!("inflight-{n}@example.com")).collect();
    let creates: Vec<_> = logins.iter().map(|login| create(&client, &base, login.clone())).collect();
    // Until the app holds all four accounts: each create has reached its replica's app call,
    // which now waits for the app's answer.
    let start = Instant::now();
    loop {
        let mut committed = 0;
        for login in &logins {
            committed += lb.app_accounts(login).await.len();
        }
        if committed == logins.len() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(1), "the creates did not reach the app in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Readers: idempotent requests in a loop, before, across and after the kill.
    let stop = Arc::new(AtomicBool::new(false));
    let paths = [
        format!("{base}/Users/{reader}"),
        format!("{base}/Groups/{readers_group}"),
        format!("{base}/Users?filter={}", urlencode("userName eq \"reader@example.com\"")),
    ];
    let readers: Vec<_> = paths
        .into_iter()
        .map(|url| {
            let (client, stop) = (client.clone(), stop.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) && seen.len() < 2000 {
                    let status = match client.get(&url).bearer_auth(TOKEN).send().await {
                        Ok(r) => r.status().as_u16(),
                        Err(e) => panic!("GET {url} through nginx: {e}"),
                    };
                    seen.push((now_ms(), status));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                (url, seen)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let killed_at = now_ms();
    a.proc.signal("KILL");
    tokio::time::sleep(Duration::from_millis(2000)).await;
    stop.store(true, Ordering::Relaxed);

    // No idempotent request failed, before or after the kill.
    for r in readers {
        let (url, seen) = r.await.unwrap();
        let after = seen.iter().filter(|(at, _)| *at > killed_at).count();
        assert!(after >= 10, "GET {url}: {after} requests after the kill");
        let failed: Vec<_> = seen.iter().filter(|(_, s)| *s != 200).collect();
        assert!(failed.is_empty(), "GET {url}: {} of {} failed: {failed:?}", failed.len(), seen.len());
    }

    // The creates on the killed replica were sent, so nginx did not send them again: they fail
    // with nginx's SCIM 502. Re-sent, each would have met the committed account on B (409).
    let mut lost = Vec::new();
    for c in creates {
        let (login, status, body) = c.await.unwrap();
        match status {
            201 => {}
            502 => {
                assert_eq!(body["schemas"], json!([ERROR]), "nginx's 502 is a SCIM error: {body}");
                assert_eq!(body["status"], "502", "{body}");
                lost.push(login.clone());
            }
            other => panic!("create {login}: {other} {body}"),
        }
        assert_eq!(lb.app_accounts(&login).await.len(), 1, "{login}: created once in the app");
    }
    assert_eq!(lost.len(), 2, "the two creates on the killed replica got 502: {lost:?}");
    let entries = stack.entries();
    for login_entry in entries.iter().filter(|e| e.method == "POST" && e.status == 502) {
        assert_eq!(login_entry.upstreams, [a.addr()], "a sent create went to A only: {login_entry:?}");
    }

    // The following requests go to B, writes included: the whole lifecycle.
    entra_lifecycle(lb, "after").await;
    // Entra retries a create that failed; the account exists, so B answers a conflict and the
    // user is then found by its userName, once.
    for login in &lost {
        let body = json!({"schemas": [USER], "userName": login, "active": true});
        let again = lb.scim(Method::POST, "/Users", Some(body)).await;
        again.expect_one_of(&[201, 409], "create retried by the client");
        let found = lb.filter("Users", &format!("userName eq \"{login}\""), "").await;
        found.expect(200, "match by userName");
        assert_eq!(found.total(), 1, "{login} found once: {:#}", found.body);
        assert_eq!(lb.app_accounts(login).await.len(), 1, "{login}: still one account");
    }

    // After `fail_timeout` (10 s) nginx tries A again with one request: it cannot connect, so
    // nothing was sent, and even a create is passed on to B.
    let retry_a_at = killed_at + 10_500;
    tokio::time::sleep(Duration::from_millis(retry_a_at.saturating_sub(now_ms()))).await;
    let mut probed = false;
    for round in 0..3 {
        let batch: Vec<_> = (0..4).map(|n| create(&client, &base, format!("probe-{round}-{n}@example.com"))).collect();
        for c in batch {
            let (login, status, body) = c.await.unwrap();
            assert_eq!(status, 201, "create {login} after A was tried again: {body}");
        }
        probed = stack.entries().iter().any(|e| e.method == "POST" && e.upstreams == [a.addr(), b.addr()]);
        if probed {
            break;
        }
    }
    assert!(probed, "a create that could not connect to A was passed on to B");

    let entries = stack.entries();
    let before: Vec<&Entry> = entries.iter().filter(|e| e.msec < killed_at).collect();
    for (name, replica) in [("A", a), ("B", b)] {
        assert!(before.iter().any(|e| e.upstreams.contains(&replica.addr())), "{name} served before the kill");
    }
    // From shortly after the kill on, B answered everything, and nothing failed.
    let settled = killed_at + 200;
    for e in entries.iter().filter(|e| e.msec > settled) {
        assert_eq!(e.upstreams.last(), Some(&b.addr()), "answered by B: {e:?}");
        assert!(e.status < 500, "no failure after the kill: {e:?}");
    }
    assert!(entries.iter().filter(|e| e.msec > settled).count() > 50, "traffic after the kill");
}
