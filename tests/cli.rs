//! The command line: `explain` renders the app calls of a SCIM request without sending them.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

fn explain(args: &[&str], body: Option<&str>) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_scimbridge"))
        .current_dir(common::repo_root())
        .args(["explain", "--tenant", "demo"])
        .args(args)
        .env("DEMO_APP_API_KEY", "the-secret-key")
        .env("DEMO_APP_URL", "http://127.0.0.1:9")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run scimbridge");
    if let Some(b) = body {
        child.stdin.take().expect("stdin").write_all(b.as_bytes()).expect("write body");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("wait");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn explain_shows_the_create_call_with_credentials_hidden() {
    let body = r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"b@x","active":"False",
        "emails":[{"type":"work","value":"b@x"}]}"#;
    let (ok, out, err) = explain(&["POST", "/Users", "--body", "-"], Some(body));
    assert!(ok, "{err}");
    assert!(out.contains("create: POST http://127.0.0.1:9/api/v1/accounts"), "{out}");
    assert!(out.contains("\"status\": \"suspended\"") && out.contains("\"login\": \"b@x\""), "{out}");
    assert!(out.contains("X-Api-Key: <credentials.api_key>"), "{out}");
    assert!(!out.contains("the-secret-key") && !err.contains("the-secret-key"), "credentials never printed");
}

#[test]
fn explain_shows_push_down_membership_calls_and_errors() {
    let (ok, out, _) = explain(&["GET", r#"/Users?filter=userName eq "b@x""#], None);
    assert!(ok && out.contains("search") && out.contains("login=b@x"), "{out}");
    let patch = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations":[{"op":"Remove","path":"members","value":[{"value":"u3"}]}]}"#;
    let (ok, out, _) = explain(&["PATCH", "/Groups/g1", "--body", "-"], Some(patch));
    assert!(ok && out.contains("remove member: DELETE") && out.contains("<app id of User u3>"), "{out}");
    let (ok, _, err) = explain(&["GET", r#"/Users?filter=userName eq"#], None);
    assert!(!ok && err.contains("400"), "{err}");
}
