//! Tenants are isolated and the embedded store survives restarts: `scimbridge serve` with a config
//! directory of two tenants and an on-disk store, against a separately running demo app.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use reqwest::Method;

const TOKEN_B: &str = "tenant-b-token";

/// A config directory with the demo tenant and a second tenant `other` on the same app.
fn two_tenant_config() -> PathBuf {
    let dir = temp_dir("config");
    std::fs::create_dir_all(dir.join("tenants")).unwrap();
    std::fs::create_dir_all(dir.join("mappings")).unwrap();
    std::fs::copy(repo_root().join("mappings/demo-app.yaml"), dir.join("mappings/demo-app.yaml")).unwrap();
    std::fs::copy(repo_root().join("tenants/demo.yaml"), dir.join("tenants/demo.yaml")).unwrap();
    let hash = sha256_hex(TOKEN_B);
    std::fs::write(
        dir.join("tenants/other.yaml"),
        format!(
            "id: other\nmapping: demo-app\nbackend:\n  base_url: \"${{DEMO_APP_URL}}\"\n  credentials:\n    api_key: \"${{DEMO_APP_API_KEY}}\"\nauth:\n  tokens:\n    - label: b\n      sha256: \"{hash}\"\n"
        ),
    )
    .unwrap();
    dir
}

fn sha256_hex(s: &str) -> String {
    hex_of(&scimbridge::auth::hash_token(s))
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn other_base(gw: &Gateway) -> String {
    format!("{}/other/scim/v2", gw.url)
}

#[tokio::test]
async fn a_token_only_opens_its_own_tenant() {
    let config = two_tenant_config();
    let data = temp_dir("data");
    let gw = Gateway::serve(&config, &data, DemoApp::start());
    let ok = gw.scim_as(TOKEN_B, Method::GET, &format!("{}/Users", other_base(&gw)), None, &[]).await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    // The demo token on the other tenant, and the other token on the demo tenant.
    let a_on_b = gw.scim_as(TOKEN, Method::GET, &format!("{}/Users", other_base(&gw)), None, &[]).await;
    assert_eq!(a_on_b.status, 401, "{:?}", a_on_b.body);
    assert_eq!(a_on_b.body["status"], "401");
    let b_on_a = gw.scim_as(TOKEN_B, Method::GET, "/Users", None, &[]).await;
    assert_eq!(b_on_a.status, 401);
    // An unknown tenant answers exactly like a wrong token: tenant ids cannot be probed.
    let unknown = gw.scim_as(TOKEN, Method::GET, &format!("{}/nobody/scim/v2/Users", gw.url), None, &[]).await;
    assert_eq!(unknown.status, 401);
    assert_eq!(unknown.body, b_on_a.body);
}

#[tokio::test]
async fn another_tenants_ids_are_not_found() {
    let config = two_tenant_config();
    let data = temp_dir("data");
    let gw = Gateway::serve(&config, &data, DemoApp::start());
    let created = gw.entra_create_user("iso@example.com").await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let id = created.id();
    let b = other_base(&gw);
    for method in [Method::GET, Method::DELETE] {
        let r = gw.scim_as(TOKEN_B, method.clone(), &format!("{b}/Users/{id}"), None, &[]).await;
        assert_eq!(r.status, 404, "{method} of tenant A's id on tenant B: {:?}", r.body);
    }
    let patch_body = patch(serde_json::json!([{"op": "Replace", "path": "active", "value": "False"}]));
    let r = gw.scim_as(TOKEN_B, Method::PATCH, &format!("{b}/Users/{id}"), Some(patch_body), &[]).await;
    assert_eq!(r.status, 404, "{:?}", r.body);
    let filtered = gw.scim_as(TOKEN_B, Method::GET, &format!("{b}/Users?filter=id%20eq%20%22{id}%22"), None, &[]).await;
    assert_eq!(filtered.body["totalResults"], 0, "{:?}", filtered.body);
    // Tenant A still has it, unchanged.
    let still = gw.scim(Method::GET, &format!("/Users/{id}"), None).await;
    assert_eq!((still.status.as_u16(), still.body["active"].clone()), (200, serde_json::json!(true)));
}

#[tokio::test]
async fn a_restart_loses_nothing() {
    let config = two_tenant_config();
    let data = temp_dir("data");
    let app = DemoApp::start();
    let (app_url, app_key) = (app.url.clone(), app.api_key.clone());
    let mut gw = Gateway::serve(&config, &data, app);
    let user = gw.entra_create_user("persist@example.com").await;
    let uid = user.id();
    let group = gw.entra_create_group("Persisted").await;
    let gid = group.id();
    let add = patch(serde_json::json!([{"op": "Add", "path": "members", "value": [{"value": uid}]}]));
    assert_eq!(gw.scim(Method::PATCH, &format!("/Groups/{gid}"), Some(add)).await.status, 204);
    let before = gw.scim(Method::GET, &format!("/Users/{uid}"), None).await;

    // Stop the gateway (the app keeps running) and start a new one on the same store.
    let app = gw.app.take().expect("app");
    gw.proc.kill();
    drop(gw);
    assert_eq!((app.url.as_str(), app.api_key.as_str()), (app_url.as_str(), app_key.as_str()));
    let gw = Gateway::serve(&config, &data, app);

    let after = gw.scim(Method::GET, &format!("/Users/{uid}"), None).await;
    assert_eq!(after.status, 200, "{:?}", after.body);
    assert_eq!(after.body["id"], before.body["id"]);
    for key in ["created", "lastModified", "version"] {
        assert_eq!(after.body["meta"][key], before.body["meta"][key], "meta.{key} survives the restart");
    }
    let g = gw.scim(Method::GET, &format!("/Groups/{gid}"), None).await;
    assert_eq!(g.body["members"][0]["value"], uid.as_str(), "{:?}", g.body);
}

/// Writes made at once share their syncs to disk (group commit), yet each is answered only once it
/// is on disk: after a SIGKILL right after the last answer, every created user is still known by
/// its id and by its name (the app keeps running, so a lost mapping would show as a 404 or as a
/// second user on a retried create).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_answered_survive_a_kill() {
    const N: usize = 24;
    let config = two_tenant_config();
    let data = temp_dir("data");
    let gw = std::sync::Arc::new(Gateway::serve(&config, &data, DemoApp::start()));
    let mut creates = tokio::task::JoinSet::new();
    for n in 0..N {
        let gw = gw.clone();
        creates.spawn(async move { (n, gw.entra_create_user(&format!("burst{n}@example.com")).await) });
    }
    let mut ids = Vec::new();
    while let Some(done) = creates.join_next().await {
        let (n, created) = done.expect("create");
        created.expect(201, "create");
        ids.push((n, created.id()));
    }
    let mut gw = std::sync::Arc::into_inner(gw).expect("the only reference left");
    let app = gw.app.take().expect("app");
    gw.proc.kill();
    drop(gw);
    let gw = Gateway::serve(&config, &data, app);
    assert_eq!(ids.len(), N);
    for (n, id) in ids {
        gw.get(&format!("/Users/{id}")).await.expect(200, "a user answered before the kill");
        let again = gw.entra_create_user(&format!("burst{n}@example.com")).await;
        again.expect_error(409, Some("uniqueness"), "its name is still taken");
    }
}

#[test]
fn check_and_serve_refuse_a_broken_file_and_name_it() {
    let config = two_tenant_config();
    let mapping = config.join("mappings/demo-app.yaml");
    let text = std::fs::read_to_string(&mapping).unwrap().replacen("    id: /id\n", "    id: /id\n    idd: /x\n", 1);
    std::fs::write(&mapping, text).unwrap();
    let out = run(&["check", "--config"], &config);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("demo-app.yaml:") && err.contains("idd"), "{err}");
    let out = run(&["serve", "--listen", "127.0.0.1:0", "--config"], &config);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to start"));
}

#[test]
fn check_reports_a_bad_template_and_a_missing_mapping() {
    let config = two_tenant_config();
    let mapping = config.join("mappings/demo-app.yaml");
    let text =
        std::fs::read_to_string(&mapping).unwrap().replace("/api/v1/accounts/{{ id }}", "/api/v1/accounts/{{ id ");
    std::fs::write(&mapping, text).unwrap();
    let t = config.join("tenants/other.yaml");
    let text = std::fs::read_to_string(&t).unwrap().replace("mapping: demo-app", "mapping: nope");
    std::fs::write(&t, text).unwrap();
    let out = run(&["check", "--config"], &config);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("unclosed `{{`") && err.contains("resources.User.operations"), "{err}");
    assert!(
        err.lines().any(|l| l.contains("demo-app.yaml:") && l.contains("unclosed")),
        "compile problems name a line: {err}"
    );
    assert!(err.contains("other.yaml") && err.contains("mapping `nope` does not exist"), "{err}");
}

fn run(args: &[&str], config: &Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_scimbridge"))
        .args(args)
        .arg(config)
        .env("DEMO_APP_API_KEY", "x")
        .env("DEMO_APP_URL", "http://127.0.0.1:9")
        .output()
        .expect("run scimbridge")
}

#[tokio::test]
async fn a_tenant_may_answer_a_duplicate_create_with_the_existing_resource() {
    let config = two_tenant_config();
    let t = config.join("tenants/demo.yaml");
    let text = std::fs::read_to_string(&t).unwrap().replace("on_duplicate: conflict", "on_duplicate: return_existing");
    std::fs::write(&t, text).unwrap();
    let gw = Gateway::serve(&config, &temp_dir("data"), DemoApp::start());
    let first = gw.entra_create_user("twice@example.com").await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    let again = gw.entra_create_user("twice@example.com").await;
    assert!(again.status.is_success(), "{:?}", again.body);
    assert_eq!(again.body["id"], first.body["id"], "the existing user, not a new one");
    let (_, v) = gw.app_get("/api/v1/accounts?login=twice%40example.com").await;
    assert_eq!(v["paging"]["total"], 1, "one account in the app: {v}");
    // The default tenant option (the other tenant) answers 409.
    let b = format!("{}/other/scim/v2/Users", gw.url);
    let body = serde_json::json!({"schemas": [USER], "userName": "twice@example.com", "active": true});
    let dup = gw.scim_as(TOKEN_B, Method::POST, &b, Some(body), &[]).await;
    assert_eq!((dup.status.as_u16(), dup.body["scimType"].clone()), (409, serde_json::json!("uniqueness")));
}

#[tokio::test]
async fn a_create_whose_answer_is_lost_is_found_again_not_duplicated() {
    let config = two_tenant_config();
    let t = config.join("tenants/demo.yaml");
    let text = std::fs::read_to_string(&t).unwrap().replace("backend:\n", "backend:\n  timeout_ms: 300\n");
    std::fs::write(&t, text).unwrap();
    // The app commits each create, then answers only after the gateway has given up waiting.
    let gw = Gateway::serve(&config, &temp_dir("data"), DemoApp::start_with(&["--create-delay-ms", "1500"]));
    let created = gw.entra_create_user("lost@example.com").await;
    assert_eq!(created.status, 201, "the gateway finds the created account: {:?}", created.body);
    let id = created.id();
    assert_eq!(created.body["userName"], "lost@example.com");
    let read = gw.scim(Method::GET, &format!("/Users/{id}"), None).await;
    assert_eq!(read.status, 200);
    // A retry of the same create is a duplicate, not a second account.
    let retry = gw.entra_create_user("lost@example.com").await;
    assert_eq!(retry.status, 409, "{:?}", retry.body);
    let (_, v) = gw.app_get("/api/v1/accounts?login=lost%40example.com").await;
    assert_eq!(v["paging"]["total"], 1, "exactly one account: {v}");
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after_per_tenant_and_per_token() {
    let config = two_tenant_config();
    let t = config.join("tenants/other.yaml");
    let mut text = std::fs::read_to_string(&t).unwrap();
    text.push_str(&format!(
        "  - label: c\n    sha256: \"{}\"\nlimits:\n  tenant: {{ per_second: 1, burst: 4 }}\n  per_token: {{ per_second: 1, burst: 2 }}\n",
        sha256_hex("token-c")
    ));
    let text = text
        .replace("auth:\n  tokens:\n    - label: b", "auth:\n  tokens:\n  - label: b")
        .replace("      sha256", "    sha256");
    std::fs::write(&t, text).unwrap();
    let gw = Gateway::serve(&config, &temp_dir("data"), DemoApp::start());
    let url = format!("{}/ServiceProviderConfig", other_base(&gw));
    let get = |token: &'static str| {
        let (gw, url) = (&gw, url.clone());
        async move { gw.scim_as(token, Method::GET, &url, None, &[]).await }
    };
    assert_eq!(get(TOKEN_B).await.status, 200);
    assert_eq!(get(TOKEN_B).await.status, 200);
    let limited = get(TOKEN_B).await;
    assert_eq!(limited.status, 429, "the token's burst of 2 is used: {:?}", limited.body);
    assert_eq!(limited.body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error");
    let retry: u64 = limited.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    assert_eq!(get("token-c").await.status, 200, "another token has its own budget");
    assert_eq!(get("token-c").await.status, 200);
    assert_eq!(get("token-c").await.status, 429, "the tenant's burst of 4 is used up");
    // The demo tenant has no limits.
    for _ in 0..10 {
        assert_eq!(gw.scim(Method::GET, "/ServiceProviderConfig", None).await.status, 200);
    }
}

/// Polls `check` every 100 ms for up to `secs` seconds.
async fn eventually(secs: u64, mut check: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..secs * 10 {
        if check().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn configuration_changes_are_reloaded_and_invalid_ones_rejected() {
    let config = two_tenant_config();
    let gw = Gateway::serve(&config, &temp_dir("data"), DemoApp::start());
    let url = format!("{}/ServiceProviderConfig", other_base(&gw));
    let status = |token: &'static str| {
        let (gw, url) = (&gw, url.clone());
        async move { gw.scim_as(token, Method::GET, &url, None, &[]).await.status.as_u16() }
    };
    assert_eq!(status("rotated-token").await, 401);

    // A new token in the file works without a restart (file change noticed).
    let t = config.join("tenants/other.yaml");
    let original = std::fs::read_to_string(&t).unwrap();
    let with_token = original.replace(
        "auth:\n  tokens:\n",
        &format!("auth:\n  tokens:\n    - label: rotated\n      sha256: \"{}\"\n", sha256_hex("rotated-token")),
    );
    std::fs::write(&t, &with_token).unwrap();
    assert!(eventually(10, async || status("rotated-token").await == 200).await, "the new token was not picked up");

    // An invalid change is rejected as a whole: the running configuration keeps serving.
    let m = config.join("mappings/demo-app.yaml");
    let good_mapping = std::fs::read_to_string(&m).unwrap();
    std::fs::write(&m, good_mapping.replace("method: DELETE", "method: FETCH")).unwrap();
    std::fs::write(&t, &original).unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(status("rotated-token").await, 200, "a rejected change must not remove the token");
    assert_eq!(gw.scim(Method::GET, "/ServiceProviderConfig", None).await.status, 200);

    // Fixed again and reloaded at once by SIGHUP: the token is gone now, as the file says.
    std::fs::write(&m, &good_mapping).unwrap();
    let hup = std::process::Command::new("kill").args(["-HUP", &gw.proc.pid().to_string()]).status().unwrap();
    assert!(hup.success());
    assert!(eventually(10, async || status("rotated-token").await == 401).await, "SIGHUP did not reload");
    assert_eq!(status(TOKEN_B).await, 200);
}

/// Two tenants sharing one app instance, each bounded by its scope: accounts carry `org`, teams
/// carry `description`, and the mapping (a copy of the demo mapping without the `organization`
/// attribute) leaves both fields to the gateway.
fn shared_app_config() -> PathBuf {
    let dir = temp_dir("shared-config");
    std::fs::create_dir_all(dir.join("tenants")).unwrap();
    std::fs::create_dir_all(dir.join("mappings")).unwrap();
    let mapping = std::fs::read_to_string(repo_root().join("mappings/demo-app.yaml")).unwrap();
    let org_line =
        "      - scim: urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:organization\n        app: /org\n";
    assert!(mapping.contains(org_line));
    std::fs::write(dir.join("mappings/demo-app.yaml"), mapping.replace(org_line, "")).unwrap();
    for (id, token) in [("acme", TOKEN), ("globex", TOKEN_B)] {
        std::fs::write(
            dir.join(format!("tenants/{id}.yaml")),
            format!(
                "id: {id}\nmapping: demo-app\nbackend:\n  base_url: \"${{DEMO_APP_URL}}\"\n  credentials:\n    api_key: \"${{DEMO_APP_API_KEY}}\"\n\
                 auth:\n  tokens:\n    - label: t\n      sha256: \"{}\"\n\
                 scope:\n  User: {{ field: /org, value: {id}, query: {{ org: {id} }} }}\n  Group: {{ field: /description, value: {id} }}\n",
                sha256_hex(token)
            ),
        )
        .unwrap();
    }
    dir
}

#[tokio::test]
async fn tenants_sharing_an_app_instance_stay_inside_their_scope() {
    let gw = Gateway::serve(&shared_app_config(), &temp_dir("data"), DemoApp::start());
    let acme = |p: &str| format!("{}{p}", gw.tenant_base("acme"));
    let globex = |p: &str| format!("{}{p}", gw.tenant_base("globex"));
    let user = |name: &str| serde_json::json!({"schemas": [USER], "userName": name, "active": true});
    let r = gw.scim_as(TOKEN, Method::POST, &acme("/Users"), Some(user("alice@acme.example")), &[]).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let alice = r.id();
    let r = gw.scim_as(TOKEN_B, Method::POST, &globex("/Users"), Some(user("bob@globex.example")), &[]).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    // The gateway marks each tenant's objects in the app.
    assert_eq!(gw.app_account("alice@acme.example").await["org"], "acme");
    let bob_app = gw.app_account("bob@globex.example").await;
    assert_eq!(bob_app["org"], "globex");

    // Lists, filters and pages see only the tenant's own objects.
    let list = gw.scim_as(TOKEN, Method::GET, &acme("/Users"), None, &[]).await;
    assert_eq!((list.total(), list.resource_ids()), (1, vec![alice.clone()]), "{:?}", list.body);
    let f = gw
        .scim_as(TOKEN, Method::GET, &acme("/Users?filter=userName%20eq%20%22bob%40globex.example%22"), None, &[])
        .await;
    assert_eq!(f.total(), 0, "a filter pushed down to the app must not reach another tenant: {:?}", f.body);
    let paged = gw.scim_as(TOKEN_B, Method::GET, &globex("/Users?startIndex=1&count=10"), None, &[]).await;
    assert_eq!(paged.total(), 1, "{:?}", paged.body);
    assert_eq!(paged.resources()[0]["userName"], "bob@globex.example");

    // A team of acme's, made in the app itself, lists globex's bob as a member: the reference gives
    // acme an id for bob, and that id reaches nothing.
    let (s, team) =
        gw.app_post("/api/v1/teams", &serde_json::json!({"team": {"name": "Mixed", "description": "acme"}})).await;
    assert_eq!(s, 201, "{team}");
    let team_id = team["team"]["id"].as_u64().unwrap();
    let (s, m) = gw
        .app_post(&format!("/api/v1/teams/{team_id}/members"), &serde_json::json!({"account_id": bob_app["id"]}))
        .await;
    assert_eq!(s, 201, "{m}");
    let groups =
        gw.scim_as(TOKEN, Method::GET, &acme("/Groups?filter=displayName%20eq%20%22Mixed%22"), None, &[]).await;
    assert_eq!(groups.total(), 1, "{:?}", groups.body);
    let bob_in_acme = member_values(&groups.resources()[0]);
    assert_eq!(bob_in_acme.len(), 1, "{:?}", groups.body);
    let bob_ref = &bob_in_acme[0];
    let get = gw.scim_as(TOKEN, Method::GET, &acme(&format!("/Users/{bob_ref}")), None, &[]).await;
    assert_eq!(get.status, 404, "{:?}", get.body);
    let deactivate = patch(serde_json::json!([{"op": "Replace", "path": "active", "value": "False"}]));
    let p = gw.scim_as(TOKEN, Method::PATCH, &acme(&format!("/Users/{bob_ref}")), Some(deactivate), &[]).await;
    assert_eq!(p.status, 404, "{:?}", p.body);
    let put = gw
        .scim_as(TOKEN, Method::PUT, &acme(&format!("/Users/{bob_ref}")), Some(user("bob@globex.example")), &[])
        .await;
    assert_eq!(put.status, 404, "{:?}", put.body);
    let del = gw.scim_as(TOKEN, Method::DELETE, &acme(&format!("/Users/{bob_ref}")), None, &[]).await;
    assert!(del.status == 204 || del.status == 404, "{:?}", del.body);
    let bob_after = gw.app_account("bob@globex.example").await;
    assert_eq!(
        (bob_after["status"].as_str(), bob_after["org"].as_str()),
        (Some("active"), Some("globex")),
        "bob untouched"
    );

    // Groups are scoped too (by scan: the app cannot filter teams by description).
    let r = gw
        .scim_as(
            TOKEN,
            Method::POST,
            &acme("/Groups"),
            Some(serde_json::json!({"schemas": [GROUP], "displayName": "Acme Eng"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(gw.app_team("Acme Eng").await["description"], "acme");
    let theirs = gw.scim_as(TOKEN_B, Method::GET, &globex("/Groups"), None, &[]).await;
    assert_eq!(theirs.total(), 0, "globex sees none of acme's groups: {:?}", theirs.body);
    let ours = gw.scim_as(TOKEN, Method::GET, &acme("/Groups?startIndex=1&count=1"), None, &[]).await;
    assert_eq!(ours.total(), 2, "{:?}", ours.body);
    // Replacing acme's user keeps it acme's.
    let put =
        gw.scim_as(TOKEN, Method::PUT, &acme(&format!("/Users/{alice}")), Some(user("alice@acme.example")), &[]).await;
    assert_eq!(put.status, 200, "{:?}", put.body);
    assert_eq!(gw.app_account("alice@acme.example").await["org"], "acme");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reloads_under_load_lose_no_request() {
    let config = two_tenant_config();
    let gw = std::sync::Arc::new(Gateway::serve(&config, &temp_dir("data"), DemoApp::start()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..8 {
        let (gw, stop) = (gw.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let (mut created, mut bad) = (Vec::new(), Vec::new());
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let r = if n % 2 == 0 {
                    let name = format!("load-{w}-{n}@example.com");
                    let r = gw.entra_create_user(&name).await;
                    if r.status == 201 {
                        created.push(name);
                    }
                    r
                } else {
                    gw.scim(Method::GET, "/Users?count=5", None).await
                };
                if !(r.status == 200 || r.status == 201) {
                    bad.push((r.status.as_u16(), r.body.to_string()));
                }
            }
            (created, bad)
        }));
    }
    // While they run: valid changes (file edits and SIGHUP) and an invalid one.
    let t = config.join("tenants/other.yaml");
    let m = config.join("mappings/demo-app.yaml");
    let (tenant, mapping) = (std::fs::read_to_string(&t).unwrap(), std::fs::read_to_string(&m).unwrap());
    let hup = || {
        assert!(
            std::process::Command::new("kill").args(["-HUP", &gw.proc.pid().to_string()]).status().unwrap().success()
        )
    };
    for round in 0..3 {
        let with_token = tenant.replace(
            "auth:\n  tokens:\n",
            &format!(
                "auth:\n  tokens:\n    - label: r{round}\n      sha256: \"{}\"\n",
                sha256_hex(&format!("r{round}"))
            ),
        );
        std::fs::write(&t, with_token).unwrap();
        hup();
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        std::fs::write(&m, mapping.replace("method: DELETE", "method: FETCH")).unwrap();
        hup();
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        std::fs::write(&m, &mapping).unwrap();
        std::fs::write(&t, &tenant).unwrap();
        hup();
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut created = Vec::new();
    for w in workers {
        let (c, bad) = w.await.unwrap();
        assert!(bad.is_empty(), "requests failed during reloads: {bad:?}");
        created.extend(c);
    }
    assert!(created.len() > 20, "the load was real: {} creates", created.len());
    // Every acknowledged create is in the app, once.
    assert_eq!(gw.app_account_count().await, created.len() as u64);
    for name in created.iter().step_by(7) {
        assert_eq!(gw.app_accounts(name).await.len(), 1, "{name}");
    }
}

#[tokio::test]
async fn a_create_whose_object_a_list_adopted_first_keeps_that_id() {
    // The app commits the account at once and answers half a second later; a list in between
    // gives the new account a SCIM id first.
    let gw =
        Gateway::serve(&two_tenant_config(), &temp_dir("data"), DemoApp::start_with(&["--create-delay-ms", "500"]));
    let create = gw.entra_create_user("adopted@example.com");
    let list = async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        gw.filter("Users", "userName eq \"adopted@example.com\"", "").await
    };
    let (created, listed) = tokio::join!(create, list);
    assert_eq!(listed.total(), 1, "the list saw the committed account: {:?}", listed.body);
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.id(), listed.resource_ids()[0], "one SCIM id for one app object");
    // What only the create knew is recorded too.
    let ext = created.body["externalId"].as_str().unwrap().to_owned();
    let by_ext = gw.filter("Users", &format!("externalId eq \"{ext}\""), "").await;
    assert_eq!(by_ext.resource_ids(), vec![created.id()]);
}
