//! Moving a tenant from the embedded store to Redis is one command with nothing lost: the same SCIM
//! ids, versions and indexes answer from the new store. Also `tenant export | import` and `purge`.
//! Needs Redis (`SCIMBRIDGE_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn redis_url() -> String {
    std::env::var("SCIMBRIDGE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Runs `scimbridge <args>` with `stdin`, returning stdout; fails the test on a non-zero exit.
fn cli(args: &[&str], stdin: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_scimbridge"))
        .args(args)
        .env("DEMO_APP_API_KEY", "unused")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "scimbridge {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test]
async fn a_tenant_moves_from_the_embedded_store_to_redis_with_nothing_lost() {
    let app = DemoApp::start();
    let (config, data) = (demo_config(), temp_dir("migrate-data"));
    let prefix = format!("scimbridge-test-{}", uuid());
    let url = redis_url();

    // State made on the embedded store.
    let mut gw = Gateway::serve_shared(&config, &data, &app, &[]);
    let mut users = Vec::new();
    for n in 0..3 {
        let r = gw.entra_create_user(&format!("move-{n}@example.com")).await;
        r.expect(201, "create");
        users.push((r.id(), r.body["externalId"].as_str().unwrap().to_owned()));
    }
    gw.patch_user(&users[0].0, serde_json::json!([{"op": "Replace", "path": "active", "value": "False"}]))
        .await
        .expect(200, "a second version");
    let gid = gw.entra_create_group("Movers").await.id();
    let add = serde_json::json!([{"op": "Add", "path": "members", "value": [{"value": users[1].0}]}]);
    gw.patch_group(&gid, add).await.expect_one_of(&[200, 204], "member");
    let before: Vec<serde_json::Value> = {
        let mut v = Vec::new();
        for (id, _) in &users {
            v.push(gw.get(&format!("/Users/{id}")).await.body);
        }
        v
    };
    gw.proc.signal("TERM");
    assert!(gw.proc.wait_exit(Duration::from_secs(10)).is_some_and(|s| s.success()));

    // One command.
    let common = ["--tenant", "demo", "--config", path(&config), "--data-dir", path(&data), "--store-prefix", &prefix];
    cli(&[&["tenant", "migrate", "--from", "embedded", "--to", &url][..], &common[..]].concat(), "");

    // The same ids, versions and indexes answer from Redis.
    let gw = Gateway::serve_shared(&config, &temp_dir("unused"), &app, &["--store", &url, "--store-prefix", &prefix]);
    for ((id, ext), old) in users.iter().zip(&before) {
        let now = gw.get(&format!("/Users/{id}")).await;
        now.expect(200, "a migrated user");
        for k in ["version", "created", "lastModified"] {
            assert_eq!(now.body["meta"][k], old["meta"][k], "same {k}");
        }
        assert_eq!(gw.filter("Users", &format!("externalId eq \"{ext}\""), "").await.resource_ids(), vec![id.clone()]);
    }
    assert_eq!(member_values(&gw.get(&format!("/Groups/{gid}")).await.body), vec![users[1].0.clone()]);

    // export | purge | import round trip on the Redis side.
    let redis_at = ["--tenant", "demo", "--store", &url, "--store-prefix", &prefix];
    let export = cli(&[&["tenant", "export"][..], &redis_at[..]].concat(), "");
    assert_eq!(export.lines().count(), 1 + 4, "header + 3 users + 1 group:\n{export}");
    cli(&[&["tenant", "purge", "--yes"][..], &redis_at[..]].concat(), "");
    gw.get(&format!("/Users/{}", users[2].0)).await.expect(404, "purged");
    cli(&[&["tenant", "import"][..], &redis_at[..]].concat(), &export);
    gw.get(&format!("/Users/{}", users[2].0)).await.expect(200, "imported again");
    cli(&[&["tenant", "purge", "--yes"][..], &redis_at[..]].concat(), "");
}
