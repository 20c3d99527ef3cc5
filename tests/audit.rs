//! The audit log as `serve --audit-log <file>` writes it: exactly one JSON line per change
//! (create, replace, patch, delete, each operation of a bulk request, and failed attempts), with
//! who, what, when and the outcome down to the app calls; values only for a tenant that lets
//! personal data into its logs; and a file reopened on SIGHUP, as logrotate needs.

mod common;

use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use common::{BULK_REQUEST, DemoApp, Gateway, Resp};

/// The demo tenant, and `open`: the same app, token and mapping, with `log_personal_data: true`.
fn config() -> std::path::PathBuf {
    let dir = common::demo_config();
    let demo = std::fs::read_to_string(dir.join("tenants/demo.yaml")).unwrap();
    let open = demo.replace("id: demo", "id: open").replace("options:\n", "options:\n  log_personal_data: true\n");
    assert!(open.contains("log_personal_data: true") && open.contains("id: open"), "the demo tenant file changed");
    std::fs::write(dir.join("tenants/open.yaml"), open).unwrap();
    dir
}

/// The changes a run makes in one tenant, with the answers the audit lines must match.
struct Changes {
    tenant: &'static str,
    user: String,
    id: String,
    created: Resp,
    duplicate: Resp,
    replaced: Resp,
    patched: Resp,
    deleted: Resp,
    bulk: Resp,
    refused_bulk: Resp,
}

async fn changes(gw: &Gateway, tenant: &'static str) -> Changes {
    let base = gw.tenant_base(tenant);
    let call = |method: Method, path: &str, body: Option<Value>| {
        let url = format!("{base}{path}");
        async move { gw.scim_as(common::TOKEN, method, &url, body, &[]).await }
    };
    let user = format!("grace.{tenant}@example.com");
    let body = json!({
        "schemas": [common::USER],
        "userName": user,
        "externalId": format!("ext-{tenant}"),
        "name": {"givenName": "Grace", "familyName": "Hopper"},
        "emails": [{"value": user, "type": "work", "primary": true}],
        "active": true,
    });
    let created = call(Method::POST, "/Users", Some(body.clone())).await;
    created.expect(201, "create");
    let id = created.id();
    let duplicate = call(Method::POST, "/Users", Some(body.clone())).await;
    duplicate.expect_error(409, Some("uniqueness"), "a duplicate");
    let mut replacement = body;
    replacement["name"]["familyName"] = json!("Hopper-Murray");
    let replaced = call(Method::PUT, &format!("/Users/{id}"), Some(replacement)).await;
    replaced.expect(200, "replace");
    let ops = json!([{"op": "replace", "path": "name.givenName", "value": "Amazing Grace"}]);
    let patched = call(Method::PATCH, &format!("/Users/{id}"), Some(common::patch(ops))).await;
    patched.expect_one_of(&[200, 204], "patch");
    let deleted = call(Method::DELETE, &format!("/Users/{id}"), None).await;
    deleted.expect(204, "delete");
    let bulk_user = format!("bulk.{tenant}@example.com");
    let bulk = call(
        Method::POST,
        "/Bulk",
        Some(json!({"schemas": [BULK_REQUEST], "Operations": [
            {"method": "POST", "bulkId": "u1", "path": "/Users", "data": {"schemas": [common::USER], "userName": bulk_user, "active": true}},
            {"method": "PATCH", "path": "/Users/bulkId:u1", "data": common::patch(json!([{"op": "replace", "path": "displayName", "value": "Bulk B."}]))},
            {"method": "DELETE", "path": "/Users/bulkId:u1"},
            {"method": "DELETE", "path": "/Users/00000000-0000-4000-8000-000000000000"},
        ]})),
    )
    .await;
    bulk.expect(200, "bulk");
    let statuses: Vec<&str> =
        bulk.body["Operations"].as_array().unwrap().iter().map(|o| o["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["201", "200", "204", "404"], "{:#}", bulk.body);
    let refused_bulk = call(Method::POST, "/Bulk", Some(json!({"schemas": ["urn:not:bulk"], "Operations": []}))).await;
    refused_bulk.expect_error(400, None, "a bulk request that is not one");
    Changes { tenant, user, id, created, duplicate, replaced, patched, deleted, bulk, refused_bulk }
}

fn request_id(r: &Resp) -> String {
    r.headers["x-request-id"].to_str().unwrap().to_owned()
}

fn lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

/// Checks the ten lines of one tenant's changes.
fn check(events: &[Value], c: &Changes) {
    let mine: Vec<&Value> = events.iter().filter(|e| e["tenant"] == c.tenant).collect();
    assert_eq!(mine.len(), 10, "5 changes, 4 bulk operations, 1 refused bulk request: {mine:#?}");
    let personal = c.tenant == "open";
    for e in &mine {
        let time = e["time"].as_str().expect("time");
        assert!(time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339).is_ok(), "{time}");
        assert_eq!(e["who"], json!({"label": "development"}), "the token's label, never the token");
        assert!(!e.to_string().contains(common::TOKEN));
        assert_eq!(e.get("trace_id"), None, "no trace without an exporter");
        if !personal {
            assert_eq!(e.get("values"), None, "no values unless the tenant allows them: {e}");
            assert!(!e.to_string().contains("@example.com"), "no user name unless the tenant allows it: {e}");
        }
    }
    let by_request = |r: &Resp| -> Vec<&Value> {
        let rid = request_id(r);
        mine.iter().copied().filter(|e| e["request_id"] == rid.as_str()).collect()
    };
    let one = |r: &Resp| -> Value {
        let found = by_request(r);
        assert_eq!(found.len(), 1, "one line for request {}: {found:#?}", request_id(r));
        let mut e = found[0].clone();
        for k in ["time", "tenant", "who", "request_id", "values"] {
            e.as_object_mut().unwrap().remove(k);
        }
        e
    };
    let attributes = json!(["userName", "externalId", "name", "emails", "active"]);
    let outcome = |status: u16, calls: u32, app: u16| json!({"status": status, "app_calls": calls, "app_status": app});
    assert_eq!(
        one(&c.created),
        json!({"operation": "create", "resource_type": "Users", "id": c.id, "attributes": attributes, "outcome": outcome(201, 1, 201)})
    );
    assert_eq!(
        one(&c.duplicate),
        json!({"operation": "create", "resource_type": "Users", "attributes": attributes,
               "outcome": {"status": 409, "scim_type": "uniqueness", "app_calls": 1, "app_status": 409}})
    );
    let replaced = one(&c.replaced);
    assert_eq!(
        (&replaced["operation"], &replaced["id"], &replaced["attributes"], &replaced["outcome"]["status"]),
        (&json!("replace"), &json!(c.id), &attributes, &json!(200))
    );
    assert!(replaced["outcome"]["app_calls"].as_u64().is_some_and(|n| n >= 1), "{replaced}");
    let patched = one(&c.patched);
    assert_eq!(
        (&patched["operation"], &patched["id"], &patched["attributes"], &patched["outcome"]["status"]),
        (&json!("patch"), &json!(c.id), &json!(["name.givenName"]), &json!(c.patched.status.as_u16()))
    );
    assert_eq!(
        one(&c.deleted),
        json!({"operation": "delete", "resource_type": "Users", "id": c.id, "attributes": [], "outcome": outcome(204, 1, 204)})
    );
    // The bulk request: one line per operation, in order, the created id carried to the others.
    let ops = by_request(&c.bulk);
    assert_eq!(ops.len(), 4, "{ops:#?}");
    let created = ops[0]["id"].as_str().expect("the created id").to_owned();
    let summary: Vec<Value> = ops
        .iter()
        .map(|e| {
            json!([
                e["operation"],
                e["id"],
                e.get("bulk_id"),
                e["attributes"],
                e["outcome"]["status"],
                e["outcome"].get("scim_type")
            ])
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            json!(["create", created, "u1", ["userName", "active"], 201, null]),
            json!(["patch", created, null, ["displayName"], 200, null]),
            json!(["delete", created, null, [], 204, null]),
            json!(["delete", "00000000-0000-4000-8000-000000000000", null, [], 404, null]),
        ]
    );
    assert_eq!(ops[3]["outcome"]["app_calls"], 0, "a missing id is answered from the store");
    assert_eq!(
        one(&c.refused_bulk),
        json!({"operation": "bulk", "resource_type": "Bulk", "attributes": [], "outcome": {"status": 400, "scim_type": "invalidSyntax", "app_calls": 0}})
    );
    if personal {
        let with_values = mine.iter().filter(|e| e.get("values").is_some()).count();
        assert_eq!(
            with_values, 6,
            "every change with a body: create, duplicate, replace, patch, bulk create and patch"
        );
        assert_eq!(ops[0]["values"]["userName"], format!("bulk.{}@example.com", c.tenant));
        let values = &by_request(&c.created)[0]["values"];
        assert_eq!(values["userName"], c.user.as_str());
        assert_eq!(values["name"], json!({"givenName": "Grace", "familyName": "Hopper"}));
        let values = &by_request(&c.patched)[0]["values"];
        assert_eq!(values, &json!([{"op": "replace", "path": "name.givenName", "value": "Amazing Grace"}]));
    }
}

/// One line per change for each tenant, values only for `open`; after logrotate moved the file and
/// sent SIGHUP, new lines go to a new file at the path, and the moved one is complete.
#[tokio::test(flavor = "multi_thread")]
async fn the_audit_log_has_one_line_per_change_and_values_only_where_allowed() {
    let data = common::temp_dir("audit");
    let path = data.join("audit.jsonl");
    let mut gw = Gateway::serve_with(
        &config(),
        &data,
        DemoApp::start(),
        &["--audit-log", path.to_str().unwrap()],
        &[],
        reqwest::Client::new(),
    );
    let demo = changes(&gw, "demo").await;
    let open = changes(&gw, "open").await;
    // Reads and refused requests are no changes.
    gw.get(&format!("/Users/{}", demo.id)).await.expect(404, "a read");
    gw.scim_as("wrong-token", Method::POST, "/Users", Some(json!({})), &[]).await.expect(401, "not authenticated");

    // logrotate: move the file away, then SIGHUP.
    let rotated = data.join("audit.jsonl.1");
    let mut waited = 0;
    while lines(&path).len() < 20 {
        assert!(waited < 100, "the writer caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
    }
    std::fs::rename(&path, &rotated).unwrap();
    gw.proc.signal("HUP");
    let mut waited = 0;
    while !path.exists() {
        assert!(waited < 100, "SIGHUP reopens the audit log at its path");
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
    }
    let after = gw.scim(Method::DELETE, &format!("/Users/{}", demo.id), None).await;
    after.expect_error(404, None, "a failed delete is a change attempted");
    gw.proc.signal("TERM");
    let status = gw.proc.wait_exit(Duration::from_secs(20)).expect("the gateway exits after SIGTERM");
    assert!(status.success(), "{status:?}");

    let before = lines(&rotated);
    assert_eq!(before.len(), 20, "{before:#?}");
    check(&before, &demo);
    check(&before, &open);
    let new = lines(&path);
    assert_eq!(new.len(), 1, "only what came after the rotation: {new:#?}");
    assert_eq!(
        (&new[0]["operation"], &new[0]["request_id"], &new[0]["outcome"]["status"], &new[0]["outcome"]["app_calls"]),
        (&json!("delete"), &json!(request_id(&after)), &json!(404), &json!(0))
    );
}

/// `-` writes the audit trail to stdout, a line each, beside the listener's announcement.
#[tokio::test(flavor = "multi_thread")]
async fn the_audit_log_on_stdout() {
    let data = common::temp_dir("audit-stdout");
    let mut gw =
        Gateway::serve_with(&config(), &data, DemoApp::start(), &["--audit-log", "-"], &[], reqwest::Client::new());
    let created = gw.entra_create_user("stdout@example.com").await;
    created.expect(201, "create");
    gw.proc.signal("TERM");
    let status = gw.proc.wait_exit(Duration::from_secs(20)).expect("exits");
    assert!(status.success());
    assert!(gw.proc.stdout().wait_for(&["\"operation\""], 1, Duration::from_secs(5)).await, "the event on stdout");
    let out: Vec<String> = gw.proc.stdout().text().lines().map(str::to_owned).collect();
    let events: Vec<Value> =
        out.iter().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events.len(), 1, "{out:?}");
    assert_eq!((&events[0]["operation"], &events[0]["id"]), (&json!("create"), &json!(created.id())));
}
