//! Group membership by whole-set replacement (`members.set`): a mapping variant of the demo app
//! whose members are changed only through `PUT /teams/{id}/members`.

mod common;

use common::*;
use reqwest::Method;
use serde_json::json;

fn config() -> std::path::PathBuf {
    let dir = temp_dir("set-config");
    std::fs::create_dir_all(dir.join("tenants")).unwrap();
    std::fs::create_dir_all(dir.join("mappings")).unwrap();
    std::fs::copy(repo_root().join("tenants/demo.yaml"), dir.join("tenants/demo.yaml")).unwrap();
    let mapping = std::fs::read_to_string(repo_root().join("mappings/demo-app.yaml")).unwrap();
    let start = mapping
        .find("      add:\n        method: POST\n        path: /api/v1/teams/{{ id }}/members")
        .expect("add call");
    let end = mapping[start..].find("    operations:").expect("operations") + start;
    let set = "      set:\n        method: PUT\n        path: /api/v1/teams/{{ id }}/members\n        body: { account_ids: \"{{ member_ids }}\" }\n";
    std::fs::write(dir.join("mappings/demo-app.yaml"), format!("{}{set}{}", &mapping[..start], &mapping[end..]))
        .unwrap();
    dir
}

#[tokio::test]
async fn members_change_through_whole_set_replacement() {
    let gw = Gateway::serve(&config(), &temp_dir("set-data"), DemoApp::start());
    let mut ids = Vec::new();
    for n in ["a", "b", "c"] {
        ids.push(gw.entra_create_user(&format!("{n}@set.example")).await.id());
    }
    let account = |i: usize| {
        let gw = &gw;
        async move { gw.app_account(&format!("{}@set.example", ["a", "b", "c"][i])).await["id"].as_u64().unwrap() }
    };
    let (a, b, c) = (account(0).await, account(1).await, account(2).await);
    let g = gw.entra_create_group("Set").await;
    assert_eq!(g.status, 201, "{:?}", g.body);
    let gid = g.id();
    let add = patch(json!([{"op": "Add", "path": "members", "value": [{"value": ids[0]}, {"value": ids[1]}]}]));
    assert_eq!(gw.scim(Method::PATCH, &format!("/Groups/{gid}"), Some(add)).await.status, 204);
    assert_eq!(sorted(&gw.app_members("Set").await), vec![a, b]);
    let remove = patch(json!([{"op": "Remove", "path": "members", "value": [{"value": ids[0]}]}]));
    assert_eq!(gw.scim(Method::PATCH, &format!("/Groups/{gid}"), Some(remove)).await.status, 204);
    assert_eq!(gw.app_members("Set").await, vec![b], "only the removed member goes");
    let put = json!({"schemas": [GROUP], "displayName": "Set", "members": [{"value": ids[0]}, {"value": ids[2]}]});
    let r = gw.scim(Method::PUT, &format!("/Groups/{gid}"), Some(put)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(sorted(&gw.app_members("Set").await), vec![a, c], "PUT sets exactly these members");
    assert_eq!(member_values(&r.body), sorted(&[ids[0].clone(), ids[2].clone()]));
}

#[tokio::test]
async fn skipped_entries_are_neither_shown_nor_removed() {
    // The demo mapping, with the app's first account (a service account) left out of every group.
    let dir = temp_dir("skip-config");
    std::fs::create_dir_all(dir.join("tenants")).unwrap();
    std::fs::create_dir_all(dir.join("mappings")).unwrap();
    std::fs::copy(repo_root().join("tenants/demo.yaml"), dir.join("tenants/demo.yaml")).unwrap();
    let mapping = std::fs::read_to_string(repo_root().join("mappings/demo-app.yaml")).unwrap();
    let anchor = "        member_id: /account_id\n";
    assert!(mapping.contains(anchor));
    let mapping = mapping.replacen(anchor, &format!("{anchor}        skip: \"entry.account_id == 1001\"\n"), 1);
    std::fs::write(dir.join("mappings/demo-app.yaml"), mapping).unwrap();
    let gw = Gateway::serve(&dir, &temp_dir("skip-data"), DemoApp::start());

    let service = json!({"account": {"login": "svc@app.example"}});
    let (s, v) = gw.app.as_ref().expect("app").post("/api/v1/accounts", &service).await;
    assert_eq!((s.as_u16(), v["account"]["id"].as_u64()), (201, Some(1001)), "{v}");
    let user = gw.entra_create_user("member@app.example").await.id();
    let g = gw.entra_create_group("Skip").await;
    let gid = g.id();
    let team = gw.app_team("Skip").await["id"].as_u64().unwrap();
    let (s, _) =
        gw.app.as_ref().unwrap().post(&format!("/api/v1/teams/{team}/members"), &json!({"account_id": 1001})).await;
    assert_eq!(s, 201);
    let add = patch(json!([{"op": "Add", "path": "members", "value": [{"value": user}]}]));
    assert_eq!(gw.scim(Method::PATCH, &format!("/Groups/{gid}"), Some(add)).await.status, 204);
    let read = gw.scim(Method::GET, &format!("/Groups/{gid}"), None).await;
    assert_eq!(member_values(&read.body), vec![user.clone()], "the service account is not shown: {:?}", read.body);
    let put = json!({"schemas": [GROUP], "displayName": "Skip", "members": []});
    assert_eq!(gw.scim(Method::PUT, &format!("/Groups/{gid}"), Some(put)).await.status, 200);
    assert_eq!(gw.app_members("Skip").await, vec![1001], "a PUT removes the members, not the skipped account");
}
