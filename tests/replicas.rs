//! Replicas behind a load balancer: two `scimbridge serve` processes sharing one Redis store and
//! one demo app, driven alternately and concurrently through the Entra lifecycle. Needs a Redis
//! server (`SCIMBRIDGE_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`; `.ci/run` starts one).

mod common;

use std::time::Duration;

use common::redis::LocalRedis;
use common::*;
use reqwest::Method;
use serde_json::json;

fn redis_url() -> String {
    std::env::var("SCIMBRIDGE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Two gateways on the demo tenant, sharing the app and a Redis store under a fresh prefix.
struct Pair {
    a: Gateway,
    b: Gateway,
    _app: DemoApp,
    prefix: String,
    /// The test's own Redis, if it has one (dropped with the pair).
    own: Option<LocalRedis>,
}

impl Drop for Pair {
    /// Leaves the shared Redis as it was found.
    fn drop(&mut self) {
        if self.own.is_some() {
            return;
        }
        let script = format!(
            "redis-cli -u '{0}' --scan --pattern '{1}:*' | xargs -r redis-cli -u '{0}' del",
            redis_url(),
            self.prefix
        );
        let _ = std::process::Command::new("sh").args(["-c", &script]).stdout(std::process::Stdio::null()).status();
    }
}

fn pair() -> Pair {
    pair_with("")
}

/// [`pair`] with extra top-level lines in the demo tenant's file.
fn pair_with(tenant_extra: &str) -> Pair {
    pair_on(demo_config(), tenant_extra)
}

/// A config where the gateway keeps `userName` itself (`stored: true`, as for an app without a
/// login) and the app's unique `login` holds the `externalId`: only the gateway can keep two
/// creates of one userName from both succeeding.
fn stored_user_name_config() -> std::path::PathBuf {
    let config = demo_config();
    let m = config.join("mappings/demo-app.yaml");
    let text = std::fs::read_to_string(&m).unwrap();
    let swaps = [
        (
            "      - scim: userName\n        app: /login\n        required: true\n      - scim: externalId\n        app: /ext_ref\n",
            "      - scim: userName\n        stored: true\n      - scim: externalId\n        app: /login\n        required: true\n",
        ),
        (
            "          userName: { query: { login: \"{{ value }}\" } }\n          externalId: { query: { ext_ref: \"{{ value }}\" } }\n",
            "          externalId: { query: { login: \"{{ value }}\" } }\n",
        ),
    ];
    let mut text = text;
    for (from, to) in swaps {
        assert!(text.contains(from), "the demo mapping changed: {from}");
        text = text.replace(from, to);
    }
    std::fs::write(&m, text).unwrap();
    config
}

fn pair_on(config: std::path::PathBuf, tenant_extra: &str) -> Pair {
    let tenant = config.join("tenants/demo.yaml");
    let text = std::fs::read_to_string(&tenant).unwrap();
    std::fs::write(&tenant, format!("{text}{tenant_extra}")).unwrap();
    pair_at(config, DemoApp::start(), None, &redis_url(), &[])
}

/// Two gateways on `config`'s demo tenant and `app`, on the Redis at `url` (the test's `own`, if
/// given) with extra `serve` arguments.
fn pair_at(config: std::path::PathBuf, app: DemoApp, own: Option<LocalRedis>, url: &str, extra: &[&str]) -> Pair {
    let prefix = format!("scimbridge-test-{}", uuid());
    let mut args = vec!["--store", url, "--store-prefix", prefix.as_str()];
    args.extend(extra);
    let a = Gateway::serve_shared(&config, &temp_dir("replica-a"), &app, &args);
    let b = Gateway::serve_shared(&config, &temp_dir("replica-b"), &app, &args);
    Pair { a, b, _app: app, prefix, own }
}

/// Operations of Entra's deactivation (the helpers wrap operations in a PatchOp body).
fn active_false() -> serde_json::Value {
    json!([{"op": "Replace", "path": "active", "value": "False"}])
}

#[tokio::test]
async fn replicas_share_state_through_the_entra_lifecycle() {
    lifecycle(&pair()).await;
}

/// Entra's lifecycle driven alternately through both replicas.
async fn lifecycle(pair: &Pair) {
    let (a, b) = (&pair.a, &pair.b);
    let created = a.entra_create_user("ada@example.com").await;
    created.expect(201, "create on A");
    let id = created.id();
    let ext = created.body["externalId"].as_str().unwrap().to_owned();
    // B knows the id, the externalId index and the version A wrote.
    let on_b = b.get(&format!("/Users/{id}")).await;
    on_b.expect(200, "read on B");
    assert_eq!(on_b.body["userName"], "ada@example.com");
    let by_ext = b.filter("Users", &format!("externalId eq \"{ext}\""), "").await;
    assert_eq!(by_ext.resource_ids(), vec![id.clone()]);
    b.patch_user(&id, active_false()).await.expect(200, "deactivate on B");
    let on_a = a.get(&format!("/Users/{id}")).await;
    assert_eq!(on_a.body["active"], false);
    assert_eq!(on_a.etag().as_deref(), Some("W/\"2\""), "A sees B's version");
    // Groups and members, alternating.
    let grace = b.entra_create_user("grace@example.com").await;
    grace.expect(201, "second user on B");
    let group = b.entra_create_group("Engineering").await;
    group.expect(201, "group on B");
    let gid = group.id();
    for (gw, uid) in [(&a, &id), (&b, &grace.id())] {
        let add = json!([{"op": "Add", "path": "members", "value": [{"value": uid}]}]);
        gw.patch_group(&gid, add).await.expect_one_of(&[200, 204], "member add");
    }
    let members = a.get(&format!("/Groups/{gid}")).await;
    assert_eq!(member_values(&members.body), sorted(&[id.clone(), grace.id()]));
    let remove = json!([{"op": "Remove", "path": "members", "value": [{"value": id}]}]);
    a.patch_group(&gid, remove).await.expect_one_of(&[200, 204], "member remove on A");
    assert_eq!(member_values(&b.get(&format!("/Groups/{gid}")).await.body), vec![grace.id()]);
    // Deleted on A is gone on B.
    a.scim(Method::DELETE, &format!("/Users/{id}"), None).await.expect(204, "delete on A");
    b.get(&format!("/Users/{id}")).await.expect(404, "deleted user on B");
    assert_eq!(a.app_account_count().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_creates_make_one_user_and_one_conflict() {
    racing_creates(&pair(), 10).await;
}

/// `rounds` pairs of creates of one user, one on each replica at once.
async fn racing_creates(pair: &Pair, rounds: usize) {
    let (a, b) = (&pair.a, &pair.b);
    for n in 0..rounds {
        let name = format!("race-{n}@example.com");
        let (ra, rb) = tokio::join!(a.entra_create_user(&name), b.entra_create_user(&name));
        let mut statuses = [ra.status.as_u16(), rb.status.as_u16()];
        statuses.sort_unstable();
        assert_eq!(statuses, [201, 409], "{name}: {:?} / {:?}", ra.body, rb.body);
        assert_eq!(a.app_accounts(&name).await.len(), 1, "{name}: one account in the app");
        // Both replicas name it with the same SCIM id.
        let winner = if ra.status == 201 { ra.id() } else { rb.id() };
        let filter = format!("userName eq \"{name}\"");
        assert_eq!(a.filter("Users", &filter, "").await.resource_ids(), vec![winner.clone()]);
        assert_eq!(b.filter("Users", &filter, "").await.resource_ids(), vec![winner]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_member_adds_lose_no_member() {
    let pair = pair();
    let (a, b) = (&pair.a, &pair.b);
    let gid = a.entra_create_group("Racers").await.id();
    let mut ids = Vec::new();
    for n in 0..16 {
        ids.push(a.entra_create_user(&format!("member-{n}@example.com")).await.id());
    }
    let adds = ids.iter().enumerate().map(|(n, uid)| {
        let gw = if n % 2 == 0 { &a } else { &b };
        let body = json!([{"op": "Add", "path": "members", "value": [{"value": uid}]}]);
        let gid = gid.as_str();
        async move { gw.patch_group(gid, body).await }
    });
    for r in futures_all(adds).await {
        r.expect_one_of(&[200, 204], "concurrent member add");
    }
    let members = b.get(&format!("/Groups/{gid}")).await;
    assert_eq!(member_values(&members.body), sorted(&ids), "every member kept");
    assert_eq!(a.app_members("Racers").await.len(), ids.len());
}

/// Runs futures concurrently (all polled together) and returns their outputs in order.
async fn futures_all<F: std::future::Future>(fs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in fs {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in set.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    out.into_iter().flatten().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_replica_loses_no_acknowledged_write() {
    let pair = pair();
    let (a, b) = (&pair.a, &pair.b);
    let a_url = a.url.clone();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (client, base) = (client.clone(), format!("{a_url}/demo/scim/v2/Users"));
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for n in 0.. {
                    let body = json!({"schemas": [USER], "userName": format!("k{w}-{n}@example.com"), "active": true});
                    let sent = client.post(&base).bearer_auth(TOKEN).json(&body).send().await;
                    match sent {
                        Ok(r) if r.status() == 201 => {
                            let v: serde_json::Value = r.json().await.unwrap_or_default();
                            acked.push(v["id"].as_str().unwrap_or_default().to_owned());
                        }
                        Ok(_) => {}
                        Err(_) => break, // the replica is gone
                    }
                }
                acked
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    a.proc.signal("KILL");
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    assert!(acked.len() > 10, "the load was real: {} acknowledged creates", acked.len());
    // Every acknowledged create is known to the surviving replica, which keeps serving.
    for id in &acked {
        b.get(&format!("/Users/{id}")).await.expect(200, "an acknowledged create, read on B");
    }
    b.entra_create_user("after-the-kill@example.com").await.expect(201, "B keeps serving");
}

#[tokio::test]
async fn a_redis_outage_answers_503_and_heals_without_a_restart() {
    let mut redis = LocalRedis::start();
    let app = DemoApp::start();
    let url = redis.url();
    let gw =
        Gateway::serve_shared(&demo_config(), &temp_dir("outage"), &app, &["--store", &url, "--store-timeout", "1s"]);
    let id = gw.entra_create_user("before@example.com").await.id();
    redis.stop();
    for what in ["read", "create"] {
        let r = if what == "read" {
            gw.get(&format!("/Users/{id}")).await
        } else {
            gw.entra_create_user("during@example.com").await
        };
        assert_eq!(r.status, 503, "{what} without Redis: {:?}", r.body);
        assert_eq!(r.body["status"], "503", "a SCIM error: {:?}", r.body);
        assert!(r.headers.get("retry-after").is_some(), "{what}: Retry-After");
    }
    redis.restart();
    let mut healed = false;
    for _ in 0..50 {
        if gw.get(&format!("/Users/{id}")).await.status == 200 {
            healed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(healed, "the gateway did not recover when Redis came back");
    gw.entra_create_user("after@example.com").await.expect(201, "writes work again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_together_hold_the_tenants_rate() {
    let pair = pair_with("limits:\n  tenant: { per_second: 20, burst: 10 }\n");
    let client = reqwest::Client::new();
    let start = std::time::Instant::now();
    let until = start + Duration::from_secs(3);
    let clients: Vec<_> = [&pair.a, &pair.b, &pair.a, &pair.b]
        .iter()
        .map(|gw| {
            let (client, url) = (client.clone(), format!("{}/ServiceProviderConfig", gw.base()));
            tokio::spawn(async move {
                let (mut ok, mut limited) = (0u32, 0u32);
                while std::time::Instant::now() < until {
                    let r = client.get(&url).bearer_auth(TOKEN).send().await.unwrap();
                    match r.status().as_u16() {
                        200 => ok += 1,
                        429 => {
                            assert!(r.headers().contains_key("retry-after"));
                            limited += 1;
                        }
                        other => panic!("unexpected status {other}"),
                    }
                }
                (ok, limited)
            })
        })
        .collect();
    let (mut ok, mut limited) = (0, 0);
    for c in clients {
        let (o, l) = c.await.unwrap();
        ok += o;
        limited += l;
    }
    let expected = 10.0 + 20.0 * start.elapsed().as_secs_f64();
    let off = (f64::from(ok) - expected).abs() / expected;
    assert!(limited > 0, "the clients pushed past the limit");
    assert!(off <= 0.10, "admitted {ok} across both replicas, expected {expected:.0} (off by {:.1}%)", off * 100.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_creates_of_a_name_only_the_gateway_keeps_make_one_user() {
    let pair = pair_on(stored_user_name_config(), "");
    let (a, b) = (&pair.a, &pair.b);
    for n in 0..10 {
        let name = format!("kept-{n}@example.com");
        let body = |ext: &str| json!({"schemas": [USER], "userName": name, "externalId": ext, "active": true});
        let (ra, rb) = tokio::join!(
            a.scim(Method::POST, "/Users", Some(body(&format!("ext-a-{n}")))),
            b.scim(Method::POST, "/Users", Some(body(&format!("ext-b-{n}"))))
        );
        let mut statuses = [ra.status.as_u16(), rb.status.as_u16()];
        statuses.sort_unstable();
        assert_eq!(statuses, [201, 409], "{name}: {:?} / {:?}", ra.body, rb.body);
        assert_eq!(a.app_account_count().await, n + 1, "{name}: exactly one account more in the app");
    }
}

/// The demo mapping with membership only by whole-set replacement (`members.set`), as in
/// tests/membership.rs: every member change reads the set and writes it back whole.
fn whole_set_config() -> std::path::PathBuf {
    let config = demo_config();
    let m = config.join("mappings/demo-app.yaml");
    let mapping = std::fs::read_to_string(&m).unwrap();
    let start = mapping
        .find("      add:\n        method: POST\n        path: /api/v1/teams/{{ id }}/members")
        .expect("add call");
    let end = mapping[start..].find("    operations:").expect("operations") + start;
    let set = "      set:\n        method: PUT\n        path: /api/v1/teams/{{ id }}/members\n        body: { account_ids: \"{{ member_ids }}\" }\n";
    std::fs::write(&m, format!("{}{set}{}", &mapping[..start], &mapping[end..])).unwrap();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_whole_set_member_changes_lose_no_member() {
    let pair = pair_on(whole_set_config(), "");
    let (a, b) = (&pair.a, &pair.b);
    let gid = a.entra_create_group("Whole").await.id();
    let mut ids = Vec::new();
    for n in 0..12 {
        ids.push(a.entra_create_user(&format!("whole-{n}@example.com")).await.id());
    }
    // Each add reads the set and writes it back whole: without a lock per group, two at once
    // on two replicas would each drop the other's member.
    let adds = ids.iter().enumerate().map(|(n, uid)| {
        let gw = if n % 2 == 0 { a } else { b };
        let ops = json!([{"op": "Add", "path": "members", "value": [{"value": uid}]}]);
        let gid = gid.as_str();
        async move { gw.patch_group(gid, ops).await }
    });
    for r in futures_all(adds).await {
        r.expect_one_of(&[200, 204], "concurrent whole-set member add");
    }
    assert_eq!(member_values(&b.get(&format!("/Groups/{gid}")).await.body), sorted(&ids), "every member kept");
    assert_eq!(a.app_members("Whole").await.len(), ids.len());
}

#[tokio::test]
async fn an_acl_user_in_the_url_is_used_and_a_wrong_password_refused_without_showing_it() {
    // A server whose default user is off: only `scim` with its password may connect.
    let redis = LocalRedis::start_with(&[
        "--user",
        "default",
        "off",
        "--user",
        "scim",
        "on",
        ">s3cret-pw",
        "~*",
        "&*",
        "+@all",
    ]);
    let app = DemoApp::start();
    let good = redis.url().replace("redis://", "redis://scim:s3cret-pw@");
    let gw = Gateway::serve_shared(&demo_config(), &temp_dir("acl"), &app, &["--store", &good]);
    gw.entra_create_user("acl@example.com").await.expect(201, "through the ACL user");
    drop(gw);
    let bad = redis.url().replace("redis://", "redis://scim:wrong-pw@");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scimbridge"))
        .args(["serve", "--listen", "127.0.0.1:0", "--store", &bad, "--config"])
        .arg(demo_config())
        .env("DEMO_APP_API_KEY", &app.api_key)
        .output()
        .unwrap();
    assert!(!out.status.success(), "must refuse to start");
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(all.contains("connect to the Redis store"), "{all}");
    assert!(!all.contains("wrong-pw"), "the password must not be printed: {all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_on_a_redis_cluster_share_state_and_race_safely() {
    let cluster = LocalRedis::cluster(3);
    let url = cluster.url();
    let pair = pair_at(demo_config(), DemoApp::start(), Some(cluster), &url, &[]);
    lifecycle(&pair).await;
    racing_creates(&pair, 5).await;
}

#[tokio::test]
async fn replicas_reach_redis_over_tls_with_a_client_certificate() {
    let ca = common::certs::Ca::new("store CA");
    let (server, client) = (ca.leaf(), ca.client_leaf());
    let acl = ["--user", "default", "off", "--user", "scim", "on", ">tls-pw", "~*", "&*", "+@all"];
    let redis = LocalRedis::tls(&server.cert_pem, &server.key_pem, &ca.pem, true, &acl);
    let dir = temp_dir("store-tls");
    let files = [("ca.pem", &ca.pem), ("client.pem", &client.cert_pem), ("client.key", &client.key_pem)];
    for (name, pem) in files {
        std::fs::write(dir.join(name), pem).unwrap();
    }
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let (ca_file, cert_file, key_file) = (path("ca.pem"), path("client.pem"), path("client.key"));
    let url = redis.url().replace("rediss://", "rediss://scim:tls-pw@");
    let tls = ["--store-tls-ca", &ca_file, "--store-tls-cert", &cert_file, "--store-tls-key", &key_file];
    let pair = pair_at(demo_config(), DemoApp::start(), Some(redis), &url, &tls);
    lifecycle(&pair).await;
    for log in [pair.a.logs.text(), pair.b.logs.text()] {
        assert!(!log.contains("tls-pw") && !log.contains("PRIVATE KEY"), "no secret in the log");
    }
}

/// A create that holds the lock of a name the gateway keeps itself, on a slow app.
fn kept_name_pair(create_delay_ms: u64) -> Pair {
    let delay = create_delay_ms.to_string();
    let app = DemoApp::start_with(&["--create-delay-ms", &delay]);
    let config = stored_user_name_config();
    // The app's answer must come within the call timeout: the slowness is the app's work.
    let m = config.join("mappings/demo-app.yaml");
    let text = std::fs::read_to_string(&m).unwrap();
    assert!(text.contains("timeout_ms: 10000"), "the demo mapping's timeout changed");
    std::fs::write(&m, text.replace("timeout_ms: 10000", "timeout_ms: 30000")).unwrap();
    pair_at(config, app, None, &redis_url(), &[])
}

fn kept_name_user(name: &str, ext: &str) -> serde_json::Value {
    json!({"schemas": [USER], "userName": name, "externalId": ext, "active": true})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lock_lease_is_renewed_for_as_long_as_its_write_runs() {
    // The app takes 12 s to create: longer than the 10 s lease, so only renewal keeps B out.
    let pair = kept_name_pair(12_000);
    let (a, b) = (&pair.a, &pair.b);
    let slow = a.scim(Method::POST, "/Users", Some(kept_name_user("slow@example.com", "ext-slow")));
    let other = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        b.scim(Method::POST, "/Users", Some(kept_name_user("slow@example.com", "ext-other"))).await
    };
    let (slow, other) = tokio::join!(slow, other);
    slow.expect(201, "the slow create");
    other.expect_error(503, None, "B waited out its 10 s while A's lease was renewed");
    b.scim(Method::POST, "/Users", Some(kept_name_user("slow@example.com", "ext-other"))).await.expect_error(
        409,
        Some("uniqueness"),
        "B's retry sees A's user",
    );
    assert_eq!(a.app_account_count().await, 1, "one account");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_holding_a_lock_frees_it_within_one_lease() {
    // A's create reaches the app (which creates the account, then takes 5 s to answer) and A is
    // killed while it holds the name's lock. Entra retries the same create on B.
    let pair = kept_name_pair(5_000);
    let (a, b) = (&pair.a, &pair.b);
    let user = kept_name_user("held@example.com", "ext-held");
    let dying = tokio::spawn({
        let (client, url) = (reqwest::Client::new(), format!("{}/demo/scim/v2/Users", a.url));
        let user = user.clone();
        async move { client.post(url).bearer_auth(TOKEN).json(&user).send().await.map(|r| r.status()) }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(a.app_account_count().await, 1, "the app holds A's account");
    a.proc.signal("KILL");
    let killed = std::time::Instant::now();
    assert!(dying.await.unwrap().is_err(), "A never answered");
    let answer = loop {
        let r = b.scim(Method::POST, "/Users", Some(user.clone())).await;
        if r.status != 503 || killed.elapsed() > Duration::from_secs(30) {
            break r;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    // Within one lease (10 s) and a retry, not the request timeout's worth.
    assert!(killed.elapsed() < Duration::from_secs(12), "served after {:?}", killed.elapsed());
    answer.expect(201, "B's retry finds A's account and records it");
    assert_eq!(b.app_account_count().await, 1, "still one account");
    let listed = b.filter("Users", "userName eq \"held@example.com\"", "").await;
    assert_eq!(listed.resource_ids(), vec![answer.id()], "one user, under B's answer's id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_together_keep_an_apps_outbound_rate() {
    const N: usize = 200;
    let (rate, burst) = (40.0, 4.0);
    let config = demo_config();
    let tenant = config.join("tenants/demo.yaml");
    let text = std::fs::read_to_string(&tenant).unwrap();
    let anchor = "    api_key: \"${DEMO_APP_API_KEY}\"\n";
    assert!(text.contains(anchor), "the demo tenant changed");
    let limit = "  rate_limit: { per_second: 40, burst: 4, max_wait_ms: 30000 }\n";
    std::fs::write(&tenant, text.replace(anchor, &format!("{anchor}{limit}"))).unwrap();
    let pair = pair_at(config, DemoApp::start(), None, &redis_url(), &[]);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers = (0..32).map(|w| {
        let gw = if w % 2 == 0 { &pair.a } else { &pair.b };
        let next = next.clone();
        async move {
            let mut failed = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= N {
                    return failed;
                }
                let r = gw.entra_create_user(&format!("paced-{i}@example.com")).await;
                if r.status != 201 {
                    failed.push((r.status, r.body));
                }
            }
        }
    });
    let failed: Vec<_> = futures_all(workers).await.into_iter().flatten().collect();
    assert!(failed.is_empty(), "every create succeeds: {:?}", failed.first());
    let (arrivals, _) = pair.a.app_arrivals().await;
    let creates = create_arrivals(&arrivals);
    assert_eq!(creates.len(), N);
    // As in tests/limits.rs: 50 ms of scheduling jitter and one call tolerated.
    let excess = worst_window_excess(&creates, rate, burst, 1.0 + rate * 0.050);
    let spread = creates[N - 1] - creates[0];
    let least = (N as f64 - burst) / rate;
    eprintln!(
        "outbound across two replicas: {N} creates over {spread:.2} s (least {least:.2} s), worst window {excess:.1}"
    );
    assert!(excess <= 0.0, "some window of arrivals exceeds burst + rate × window by {excess:.1} calls");
    assert!(
        spread >= least * 0.9,
        "{N} creates within {spread:.2} s; the shared limit allows no less than {least:.2} s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_share_one_app_token_and_keep_it_sealed() {
    let config = demo_config();
    let m = config.join("mappings/demo-app.yaml");
    let mapping = std::fs::read_to_string(&m).unwrap();
    let key_header = "http:\n  headers:\n    X-Api-Key: \"{{ credentials.api_key }}\"\n";
    let oauth = "http:\n  auth:\n    type: oauth2_client_credentials\n    token_url: \"{{ credentials.token_url }}\"\n    client_id: scimbridge\n    client_secret: \"{{ credentials.api_key }}\"\n";
    assert!(mapping.contains(key_header), "the demo mapping changed");
    std::fs::write(&m, mapping.replace(key_header, oauth)).unwrap();
    let tenant = config.join("tenants/demo.yaml");
    let text = std::fs::read_to_string(&tenant).unwrap();
    let anchor = "    api_key: \"${DEMO_APP_API_KEY}\"\n";
    let token_url = "    token_url: \"${DEMO_APP_URL}/api/v1/oauth/token\"\n";
    std::fs::write(&tenant, text.replace(anchor, &format!("{anchor}{token_url}"))).unwrap();
    let pair = pair_at(config, DemoApp::start(), None, &redis_url(), &[]);
    for n in 0..10 {
        let gw = if n % 2 == 0 { &pair.a } else { &pair.b };
        gw.entra_create_user(&format!("tok-{n}@example.com")).await.expect(201, "create with an OAuth token");
    }
    let (arrivals, _) = pair.a.app_arrivals().await;
    let fetches = arrivals.iter().filter(|(_, m, p)| m == "POST" && p == "/api/v1/oauth/token").count();
    assert_eq!(fetches, 1, "one token for both replicas");
    // What Redis holds is sealed: 12 bytes of nonce, the 32-character token encrypted, a 16-byte tag.
    let out = std::process::Command::new("redis-cli")
        .args(["-u", &redis_url(), "--scan", "--pattern", &format!("{}:{{oauth:*}}:token", pair.prefix)])
        .output()
        .unwrap();
    let keys: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(keys.len(), 1, "one shared token: {keys:?}");
    let raw = std::process::Command::new("redis-cli")
        .args(["-u", &redis_url(), "--no-raw", "strlen", &keys[0]])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&raw.stdout).trim(), "(integer) 60");
    let value =
        std::process::Command::new("redis-cli").args(["-u", &redis_url(), "--raw", "get", &keys[0]]).output().unwrap();
    let hex_run = value.stdout.windows(32).any(|w| w.iter().all(u8::is_ascii_hexdigit));
    assert!(!hex_run, "the token is not stored in the clear");
}
