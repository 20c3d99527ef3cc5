//! Rate limits over real HTTP: the inbound limits hold their configured rate and burst, and the
//! outbound limit paces a burst of creates to the app (measured where the calls land, in the demo
//! app) instead of failing any, or refuses up front a call whose wait would be too long. Tenants of
//! one app instance share its limiter, which outlives a reload; `check` names bad values' lines.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use reqwest::Method;
use scimbridge::config::read_dir;
use scimbridge::tenant::Registry;

/// A config directory with the demo mapping and one tenant per `(id, backend extra, top-level
/// extra, token labels)`; each token is `<id>-<label>`. Extras are YAML lines at their level.
fn config_dir(tenants: &[(&str, &str, &str, &[&str])]) -> PathBuf {
    let dir = temp_dir("limits");
    std::fs::create_dir_all(dir.join("tenants")).expect("tenants dir");
    std::fs::create_dir_all(dir.join("mappings")).expect("mappings dir");
    std::fs::copy(repo_root().join("mappings/demo-app.yaml"), dir.join("mappings/demo-app.yaml")).expect("mapping");
    for (id, backend, top, labels) in tenants {
        let tokens: String = labels
            .iter()
            .map(|l| format!("    - label: {l}\n      sha256: \"{}\"\n", sha256_hex(&format!("{id}-{l}"))))
            .collect();
        let text = format!(
            "id: {id}\nmapping: demo-app\nbackend:\n  base_url: \"${{DEMO_APP_URL}}\"\n  credentials:\n    api_key: \"${{DEMO_APP_API_KEY}}\"\n{backend}auth:\n  tokens:\n{tokens}{top}"
        );
        std::fs::write(dir.join(format!("tenants/{id}.yaml")), text).expect("tenant file");
    }
    dir
}

fn sha256_hex(s: &str) -> String {
    scimbridge::auth::hash_token(s).iter().map(|b| format!("{b:02x}")).collect()
}

fn user(name: &str) -> serde_json::Value {
    serde_json::json!({"schemas": [USER], "userName": name, "active": true})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_1000_creates_reaches_the_app_at_its_limit_and_none_fails() {
    const N: usize = 1000;
    const CONCURRENCY: usize = 64;
    let (rate, burst, in_flight) = (200.0, 20.0, 8);
    let config = config_dir(&[(
        "sync",
        "  rate_limit: { per_second: 200, burst: 20, max_wait_ms: 30000 }\n  max_in_flight: 8\n",
        "",
        &["entra"],
    )]);
    let gw = Arc::new(Gateway::serve(&config, &temp_dir("data"), DemoApp::start()));
    let url = format!("{}/Users", gw.tenant_base("sync"));
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (gw, url, next) = (gw.clone(), url.clone(), next.clone());
        workers.spawn(async move {
            let mut statuses = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= N {
                    return statuses;
                }
                let r = gw
                    .scim_as("sync-entra", Method::POST, &url, Some(user(&format!("sync-{i}@example.com"))), &[])
                    .await;
                statuses.push((r.status.as_u16(), r.body));
            }
        });
    }
    let mut statuses = Vec::new();
    while let Some(done) = tokio::time::timeout(Duration::from_secs(60), workers.join_next()).await.expect("bounded") {
        statuses.extend(done.expect("worker"));
    }
    let client_elapsed = started.elapsed();
    assert_eq!(statuses.len(), N);
    let failed: Vec<_> = statuses.iter().filter(|(s, _)| *s != 201).take(3).collect();
    assert!(failed.is_empty(), "every create succeeds; some did not: {failed:?}");
    assert_eq!(gw.app_account_count().await, N as u64, "the app holds exactly the created accounts");

    let (arrivals, peak) = gw.app_arrivals().await;
    let creates = create_arrivals(&arrivals);
    assert_eq!(creates.len(), N, "one app create per SCIM create, no retries");
    // Every call the gateway made to the app: all that arrived up to the last create (the count
    // query above came after it).
    let calls: Vec<f64> = arrivals.iter().map(|(t, _, _)| *t as f64 / 1e6).filter(|t| *t <= creates[N - 1]).collect();
    // The gateway's schedule is exact (unit-tested in `backend::limit`); arrival times at the app
    // add the OS's scheduling jitter, which on 2 busy cores (the inbound tests hammer a gateway
    // alongside) reaches some 30 ms: one call late by d makes the window after it look d × rate too
    // full. Tolerated: 50 ms of it, plus one call. A missing limit exceeds this by hundreds of calls.
    let tolerance = 1.0 + rate * 0.050;
    let excess = worst_window_excess(&calls, rate, burst, tolerance);
    assert!(excess <= 0.0, "some window of arrivals at the app exceeds burst + rate × window by {excess:.1} calls");
    let spread = calls[calls.len() - 1] - calls[0];
    let least = (N as f64 - burst) / rate;
    assert!(
        spread >= least * 0.9,
        "1000 creates reached the app within {spread:.2} s; the limit allows no less than {least:.2} s"
    );
    assert!(peak <= in_flight, "at most {in_flight} calls at the app at once, saw {peak}");
    eprintln!(
        "outbound: {N} creates in {:.2} s at the client, spread over {spread:.2} s at the app (least {least:.2} s), \
         worst window {excess:.1} vs the bound, peak in flight {peak}",
        client_elapsed.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_in_flight_caps_the_calls_the_app_handles_at_once() {
    const N: usize = 60;
    let config = config_dir(&[("capped", "  max_in_flight: 4\n", "", &["entra"])]);
    // Each create takes the app 100 ms, so 60 concurrent clients would keep 60 calls open at once.
    let gw = Arc::new(Gateway::serve(&config, &temp_dir("data"), DemoApp::start_with(&["--create-delay-ms", "100"])));
    let url = format!("{}/Users", gw.tenant_base("capped"));
    let mut creates = tokio::task::JoinSet::new();
    for i in 0..N {
        let (gw, url) = (gw.clone(), url.clone());
        creates.spawn(async move {
            gw.scim_as("capped-entra", Method::POST, &url, Some(user(&format!("cap-{i}@example.com"))), &[]).await
        });
    }
    let started = Instant::now();
    while let Some(r) = tokio::time::timeout(Duration::from_secs(60), creates.join_next()).await.expect("bounded") {
        r.expect("create").expect(201, "a create waiting for a place in flight");
    }
    let (_, peak) = gw.app_arrivals().await;
    assert_eq!(peak, 4, "the app handled exactly max_in_flight calls at once at its busiest");
    assert!(started.elapsed() >= Duration::from_millis(N as u64 / 4 * 100 * 9 / 10), "{:?}", started.elapsed());
    assert_eq!(gw.app_account_count().await, N as u64);
}

#[tokio::test]
async fn a_wait_beyond_max_wait_is_refused_before_anything_is_sent() {
    let config =
        config_dir(&[("slow", "  rate_limit: { per_second: 1, burst: 1, max_wait_ms: 300 }\n", "", &["entra"])]);
    let gw = Gateway::serve(&config, &temp_dir("data"), DemoApp::start());
    let url = format!("{}/Users", gw.tenant_base("slow"));
    let first = gw.scim_as("slow-entra", Method::POST, &url, Some(user("first@example.com")), &[]).await;
    first.expect(201, "the first create takes the one call of this second");
    // The next call's turn is about a second away, beyond max_wait: refused at once, not after waiting.
    let t = Instant::now();
    let second = gw.scim_as("slow-entra", Method::POST, &url, Some(user("second@example.com")), &[]).await;
    let took = t.elapsed();
    second.expect_error(503, None, "a create that would wait too long");
    let retry: u64 = second.headers["retry-after"].to_str().expect("ascii").parse().expect("whole seconds");
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    assert!(took < Duration::from_millis(300), "refused up front, not after waiting max_wait: {took:?}");
    let (arrivals, _) = gw.app_arrivals().await;
    let posts: Vec<_> = arrivals.iter().filter(|(_, m, _)| m == "POST").collect();
    assert_eq!(posts.len(), 1, "only the first create reached the app: {arrivals:?}");
    assert!(gw.app_accounts("second@example.com").await.is_empty());
    // After Retry-After the app has room again.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let again = gw.scim_as("slow-entra", Method::POST, &url, Some(user("second@example.com")), &[]).await;
    again.expect(201, "the same create after Retry-After");
    assert_eq!(gw.app_accounts("second@example.com").await.len(), 1);
}

#[test]
fn check_reports_bad_outbound_limits_with_their_line() {
    let config = config_dir(&[
        ("a", "  rate_limit: { per_second: 0, burst: 5 }\n  max_in_flight: 0\n", "", &["x"]),
        ("b", "  rate_limit:\n    per_second: 10\n    max_wait_ms: 90000\n", "", &["x"]),
    ]);
    let out = check(&config);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("a.yaml:7 (backend.rate_limit.per_second): must be at least 1"), "{err}");
    assert!(err.contains("a.yaml:8 (backend.max_in_flight): must be at least 1"), "{err}");
    assert!(err.contains("b.yaml:9 (backend.rate_limit.max_wait_ms): must be at most 60000"), "{err}");

    // Two tenants of one app instance must agree on its limit; a tenant without one counts.
    let config = config_dir(&[
        ("a", "  rate_limit: { per_second: 10 }\n", "", &["x"]),
        ("b", "  rate_limit: { per_second: 20 }\n", "", &["x"]),
        ("c", "", "", &["x"]),
    ]);
    let out = check(&config);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("b.yaml:7 (backend.rate_limit): tenant `b` calls the same `base_url` as tenant `a`"), "{err}");
    assert!(err.contains("c.yaml:4 (backend.base_url): tenant `c` calls the same `base_url`"), "{err}");
    assert!(err.contains("share its outbound limit"), "{err}");
}

fn check(config: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_scimbridge"))
        .args(["check", "--config"])
        .arg(config)
        .env("DEMO_APP_API_KEY", "x")
        .env("DEMO_APP_URL", "http://127.0.0.1:9")
        .output()
        .expect("run scimbridge check")
}

/// Admitted and refused requests of one token while clients hammer a tenant.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    admitted: usize,
    limited: usize,
}

/// Sends `burst` requests one after another with `token` (all must pass), then runs `clients`
/// loops of requests as fast as they go until `until`; checks every 429's shape on the way.
async fn hammer(gw: Arc<Gateway>, url: String, token: String, burst: usize, clients: usize, until: Instant) -> Tally {
    for i in 0..burst {
        let r = gw.scim_as(&token, Method::GET, &url, None, &[]).await;
        assert_eq!(r.status, 200, "request {i} of the first burst is admitted: {:?}", r.body);
    }
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (gw, url, token) = (gw.clone(), url.clone(), token.clone());
        loops.spawn(async move {
            let mut t = Tally::default();
            while Instant::now() < until {
                let r = gw.scim_as(&token, Method::GET, &url, None, &[]).await;
                match r.status.as_u16() {
                    200 => t.admitted += 1,
                    429 => {
                        r.expect_error(429, None, "a limited request");
                        let retry: u64 =
                            r.headers.get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(0);
                        assert!(retry >= 1, "429 with Retry-After ≥ 1: {:?}", r.headers);
                        t.limited += 1;
                    }
                    s => panic!("unexpected status {s}: {:?}", r.body),
                }
            }
            t
        });
    }
    let mut total = Tally { admitted: burst, limited: 0 };
    while let Some(t) = loops.join_next().await {
        let t = t.expect("client");
        total.admitted += t.admitted;
        total.limited += t.limited;
    }
    total
}

/// Asserts `admitted` is within 10% of `burst + rate × elapsed`.
#[track_caller]
fn assert_rate(what: &str, t: Tally, burst: f64, rate: f64, elapsed: Duration) {
    let expected = burst + rate * elapsed.as_secs_f64();
    let error = (t.admitted as f64 - expected).abs() / expected;
    eprintln!(
        "{what}: {t:?} in {:.2} s; expected {expected:.1} admitted ({:.1}% off)",
        elapsed.as_secs_f64(),
        error * 100.0
    );
    assert!(t.limited > t.admitted, "{what}: the clients did push beyond the limit: {t:?}");
    assert!(error <= 0.10, "{what}: {} admitted, expected {expected:.1} ± 10%", t.admitted);
}

const HAMMER: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_limit_holds_its_rate_and_burst() {
    let config = config_dir(&[("inbound", "", "limits:\n  tenant: { per_second: 20, burst: 10 }\n", &["entra"])]);
    let gw = Arc::new(Gateway::serve(&config, &temp_dir("data"), DemoApp::start()));
    let url = format!("{}/ServiceProviderConfig", gw.tenant_base("inbound"));
    let start = Instant::now();
    let t = hammer(gw.clone(), url, "inbound-entra".into(), 10, 4, start + HAMMER).await;
    assert_rate("tenant limit", t, 10.0, 20.0, start.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_token_limit_gives_each_token_its_own_budget() {
    let config =
        config_dir(&[("inbound", "", "limits:\n  per_token: { per_second: 20, burst: 10 }\n", &["one", "two"])]);
    let gw = Arc::new(Gateway::serve(&config, &temp_dir("data"), DemoApp::start()));
    let url = format!("{}/ServiceProviderConfig", gw.tenant_base("inbound"));
    let start = Instant::now();
    let until = start + HAMMER;
    let one = tokio::spawn(hammer(gw.clone(), url.clone(), "inbound-one".into(), 10, 2, until));
    let two = tokio::spawn(hammer(gw.clone(), url, "inbound-two".into(), 10, 2, until));
    let (one, two) = (one.await.expect("token one"), two.await.expect("token two"));
    let elapsed = start.elapsed();
    assert_rate("token one", one, 10.0, 20.0, elapsed);
    assert_rate("token two", two, 10.0, 20.0, elapsed);
}

/// Writes a config directory with the demo mapping and tenants `a` and `b` on one app instance (spelt
/// differently), each with `backend` lines `a_extra` and `b_extra`.
fn write_config(dir: &Path, a_extra: &str, b_extra: &str) {
    std::fs::create_dir_all(dir.join("tenants")).unwrap();
    std::fs::create_dir_all(dir.join("mappings")).unwrap();
    let mapping = repo_root().join("mappings/demo-app.yaml");
    std::fs::copy(mapping, dir.join("mappings/demo-app.yaml")).unwrap();
    for (id, url, extra) in [("a", "http://127.0.0.1:9", a_extra), ("b", "HTTP://127.0.0.1:9/", b_extra)] {
        let text = format!(
            "id: {id}\nmapping: demo-app\nbackend:\n  base_url: \"{url}\"\n  credentials:\n    api_key: k\n{extra}auth:\n  tokens:\n    - label: t\n      sha256: \"7c43ef5ae21d43ce2743f770c68e24def1a43ee2f416d2438410c8af7af2ff2c\"\n"
        );
        std::fs::write(dir.join(format!("tenants/{id}.yaml")), text).unwrap();
    }
}

#[test]
fn tenants_of_one_app_share_its_limiter_and_a_reload_keeps_it() {
    let dir = temp_dir("share");
    let limit = |r| scimbridge::backend::OutboundLimit::new(Some((r, Some(5))), None, Some(2)).unwrap();
    let rate = |r| format!("  rate_limit: {{ per_second: {r}, burst: 5 }}\n  max_in_flight: 2\n");
    write_config(&dir, &rate(10), &rate(10));
    let first = Registry::build(&read_dir(&dir).unwrap()).unwrap();
    let shared = first.get("a").unwrap().backend.limiter().unwrap().clone();
    assert!(Arc::ptr_eq(&shared, first.get("b").unwrap().backend.limiter().unwrap()));
    assert_eq!(shared.limit(), limit(10));

    // A reload with a new rate: the same limiter, with the new values.
    write_config(&dir, &rate(20), &rate(20));
    let second = Registry::rebuild(&read_dir(&dir).unwrap(), &first).unwrap();
    assert!(Arc::ptr_eq(&shared, second.get("b").unwrap().backend.limiter().unwrap()));
    assert_eq!(shared.limit(), limit(20));

    // A rejected reload (the tenants disagree) changes nothing.
    write_config(&dir, &rate(30), &rate(40));
    assert!(Registry::rebuild(&read_dir(&dir).unwrap(), &second).is_err());
    assert_eq!(shared.limit(), limit(20));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_reload_does_not_refill_an_inbound_limit() {
    let config = config_dir(&[("a", "", "limits:\n  tenant: { per_second: 1, burst: 3 }\n", &["x"])]);
    let gw = Gateway::serve(&config, &temp_dir("data"), DemoApp::start());
    let url = format!("{}/ServiceProviderConfig", gw.tenant_base("a"));
    let status = |token: String| {
        let (gw, url) = (&gw, url.clone());
        async move { gw.scim_as(&token, Method::GET, &url, None, &[]).await.status.as_u16() }
    };
    for _ in 0..3 {
        assert_eq!(status("a-x".into()).await, 200);
    }
    assert_eq!(status("a-x".into()).await, 429, "the burst is used up");
    // A valid change elsewhere in the file (a new token) reloads the tenant, limits unchanged.
    let file = config.join("tenants/a.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let added = format!("  tokens:\n    - label: y\n      sha256: \"{}\"\n", sha256_hex("a-y"));
    std::fs::write(&file, text.replace("  tokens:\n", &added)).unwrap();
    let hup = std::process::Command::new("kill").args(["-HUP", &gw.proc.pid().to_string()]).status().unwrap();
    assert!(hup.success());
    // The new token answers once the reload is in: still limited, as the bucket refills only after 1 s.
    let mut seen = 401;
    for _ in 0..8 {
        seen = status("a-y".into()).await;
        if seen != 401 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, 429, "the reload must keep the limiter's state, not hand out a new burst");
}
