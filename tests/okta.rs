//! What Okta does differently (/work/shared/entra-scim-behaviour.md b10): lookups and imports with
//! `startIndex=1&count=100`, creates carrying `password`, `groups: []` and `locale`, updates as a
//! full PUT, deactivation by a no-path replace, group renames by a no-path replace carrying `id`,
//! membership changes as remove+add or a full replace. Every test checks the SCIM answer and the
//! demo app's own state.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

const OKTA_UA: (&str, &str) = ("User-Agent", "Okta SCIM Client 1.0.0");

async fn okta(gw: &Gateway, method: Method, path: &str, body: Option<Value>) -> Resp {
    gw.scim_as(TOKEN, method, path, body, &[OKTA_UA]).await
}

async fn okta_user(gw: &Gateway, login: &str) -> String {
    let r = gw.okta_create_user(login, "Ok", "Ta").await;
    r.expect(201, &format!("Okta create {login}"));
    r.id()
}

async fn okta_group(gw: &Gateway, name: &str) -> String {
    let r = gw.okta_create_group(name).await;
    r.expect(201, &format!("Okta create group {name}"));
    r.id()
}

#[tokio::test]
async fn lookup_by_user_name_with_start_index_and_count_100() {
    let gw = Gateway::demo();
    let q = format!("/Users?filter={}&startIndex=1&count=100", urlencode(r#"userName eq "okta@example.com""#));
    let empty = okta(&gw, Method::GET, &q, None).await;
    empty.expect(200, "lookup before create");
    assert_eq!(empty.total(), 0, "{:#}", empty.body);
    assert_eq!(empty.body["startIndex"], 1, "{:#}", empty.body);

    let id = okta_user(&gw, "okta@example.com").await;
    let found = okta(&gw, Method::GET, &q, None).await;
    found.expect(200, "lookup after create");
    assert_eq!(found.resource_ids(), vec![id], "{:#}", found.body);
    assert_eq!(found.body["startIndex"], 1, "{:#}", found.body);
    assert_eq!(found.body["itemsPerPage"], 1, "{:#}", found.body);
    assert_eq!(gw.app_account("okta@example.com").await["first_name"], "Ok");
}

#[tokio::test]
async fn create_with_password_groups_and_locale_stores_the_account_and_never_echoes_the_password() {
    let gw = Gateway::demo();
    let r = gw.okta_create_user("isabella@example.com", "Isabella", "Jensen").await;
    r.expect(201, "Okta create");
    assert!(!r.id().is_empty(), "{:#}", r.body);
    assert_eq!(r.body["userName"], "isabella@example.com", "{:#}", r.body);
    assert_eq!(r.body["active"], true, "{:#}", r.body);
    assert!(r.body.get("password").is_none(), "password is never returned (RFC 7643 §4.1.1): {:#}", r.body);
    let account = gw.app_account("isabella@example.com").await;
    assert_eq!(account["first_name"], "Isabella", "{account}");
    assert_eq!(account["last_name"], "Jensen", "{account}");
    assert_eq!(account["display"], "Isabella Jensen", "{account}");
    assert_eq!(account["email"], "isabella@example.com", "{account}");
    assert_eq!(account["ext_ref"], "okta-isabella@example.com", "{account}");
    assert_eq!(account["status"], "active", "{account}");
    let read = gw.get(&format!("/Users/{}", r.id())).await;
    assert!(read.body.get("password").is_none(), "{:#}", read.body);
}

#[tokio::test]
async fn duplicate_create_is_409_and_an_empty_body_is_rejected() {
    let gw = Gateway::demo();
    okta_user(&gw, "twice@example.com").await;
    gw.okta_create_user("twice@example.com", "Ok", "Ta").await.expect_error(409, Some("uniqueness"), "Okta duplicate");
    let empty = okta(&gw, Method::POST, "/Users", Some(json!({}))).await;
    empty.expect(400, "empty create body");
    assert_eq!(empty.body["schemas"], json!([ERROR]), "{:#}", empty.body);
    assert_eq!(gw.app_account_count().await, 1, "only the first create reached the app");
}

#[tokio::test]
async fn update_is_a_get_then_a_full_put() {
    let gw = Gateway::demo();
    let id = okta_user(&gw, "put@example.com").await;
    gw.patch_user(&id, json!([{"op": "add", "path": "nickName", "value": "Nicky"}]))
        .await
        .expect_one_of(&[200, 204], "precondition: a nickName");
    assert_eq!(gw.app_account("put@example.com").await["nick"], "Nicky");

    let current = okta(&gw, Method::GET, &format!("/Users/{id}"), None).await;
    current.expect(200, "Okta GET before PUT");
    let mut body = current.body.clone();
    body["name"]["givenName"] = json!("Changed");
    body["displayName"] = json!("Changed Ta");
    body["title"] = json!("Director");
    body["locale"] = json!("en-US");
    body["groups"] = json!([]);
    body.as_object_mut().unwrap().remove("nickName");
    let r = okta(&gw, Method::PUT, &format!("/Users/{id}"), Some(body)).await;
    r.expect(200, "full PUT");
    assert_eq!(r.body["id"], id.as_str(), "{:#}", r.body);
    assert_eq!(r.body["name"]["givenName"], "Changed", "{:#}", r.body);
    assert_eq!(r.body["title"], "Director", "{:#}", r.body);
    assert!(is_empty(&r.body["nickName"]), "PUT without nickName clears it: {:#}", r.body);

    let account = gw.app_account("put@example.com").await;
    assert_eq!(account["first_name"], "Changed", "{account}");
    assert_eq!(account["display"], "Changed Ta", "{account}");
    assert_eq!(account["job_title"], "Director", "{account}");
    assert!(account["nick"].is_null(), "PUT replaces: the omitted nickName is cleared in the app: {account}");
    assert_eq!(account["last_name"], "Ta", "{account}");
    assert_eq!(account["status"], "active", "{account}");
}

#[tokio::test]
async fn put_with_active_false_deactivates() {
    let gw = Gateway::demo();
    let id = okta_user(&gw, "putoff@example.com").await;
    let mut body = gw.get(&format!("/Users/{id}")).await.body;
    body["active"] = json!(false);
    okta(&gw, Method::PUT, &format!("/Users/{id}"), Some(body)).await.expect(200, "PUT active false");
    assert_eq!(gw.app_account("putoff@example.com").await["status"], "suspended");
    assert_eq!(gw.get(&format!("/Users/{id}")).await.body["active"], false);
}

#[tokio::test]
async fn deactivate_with_a_no_path_replace_keeps_the_user_and_reactivate_restores_it() {
    let gw = Gateway::demo();
    let id = okta_user(&gw, "deact@example.com").await;
    let r = okta(
        &gw,
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(patch(json!([{"op": "replace", "value": {"active": false}}]))),
    )
    .await;
    r.expect_one_of(&[200, 204], "Okta deactivate");
    assert_eq!(gw.app_account("deact@example.com").await["status"], "suspended");
    let read = gw.get(&format!("/Users/{id}")).await;
    read.expect(200, "a deactivated user is still there (Okta never DELETEs)");
    assert_eq!(read.body["active"], false, "{:#}", read.body);
    assert_eq!(read.body["userName"], "deact@example.com", "{:#}", read.body);

    okta(
        &gw,
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(patch(json!([{"op": "replace", "value": {"active": true}}]))),
    )
    .await
    .expect_one_of(&[200, 204], "Okta reactivate");
    assert_eq!(gw.app_account("deact@example.com").await["status"], "active");
    assert_eq!(gw.get(&format!("/Users/{id}")).await.body["active"], true);
}

#[tokio::test]
async fn import_pages_with_count_100_in_a_stable_order() {
    let gw = Gateway::demo();
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(okta_user(&gw, &format!("imp{i}@example.com")).await);
    }
    let a = okta(&gw, Method::GET, "/Users?startIndex=1&count=100", None).await;
    a.expect(200, "import page");
    assert_eq!(a.total(), 3, "{:#}", a.body);
    assert_eq!(a.body["itemsPerPage"], 3, "{:#}", a.body);
    assert_eq!(a.body["startIndex"], 1, "{:#}", a.body);
    assert_eq!(sorted(&a.resource_ids()), sorted(&ids), "{:#}", a.body);
    let b = okta(&gw, Method::GET, "/Users?startIndex=1&count=100", None).await;
    assert_eq!(a.resource_ids(), b.resource_ids(), "stable order across imports");
    assert_eq!(gw.app_account_count().await, 3);
}

#[tokio::test]
async fn imports_include_accounts_the_app_already_had_and_they_can_be_managed() {
    let gw = Gateway::demo();
    let (s, v) = gw
        .app_post("/api/v1/accounts", &json!({"account": {"login": "legacy@example.com", "first_name": "Leg"}}))
        .await;
    assert_eq!(s, 201, "seed the app directly: {v}");
    okta_user(&gw, "fresh@example.com").await;
    let page = okta(&gw, Method::GET, "/Users?startIndex=1&count=100", None).await;
    page.expect(200, "import");
    assert_eq!(page.total(), 2, "{:#}", page.body);
    let legacy = page
        .resources()
        .into_iter()
        .find(|r| r["userName"] == "legacy@example.com")
        .unwrap_or_else(|| panic!("the pre-existing account is imported: {:#}", page.body));
    let id = legacy["id"].as_str().expect("a SCIM id for the imported account").to_owned();
    assert_eq!(legacy["name"]["givenName"], "Leg", "{legacy}");
    let read = gw.get(&format!("/Users/{id}")).await;
    read.expect(200, "the imported id is stable and readable");
    okta(
        &gw,
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(patch(json!([{"op": "replace", "value": {"active": false}}]))),
    )
    .await
    .expect_one_of(&[200, 204], "deactivate the imported user");
    assert_eq!(gw.app_account("legacy@example.com").await["status"], "suspended");
    let again = okta(&gw, Method::GET, "/Users?startIndex=1&count=100", None).await;
    assert!(again.resource_ids().contains(&id), "same id on the next import: {:#}", again.body);
}

#[tokio::test]
async fn group_create_with_empty_members_and_rename_by_no_path_replace_with_id() {
    let gw = Gateway::demo();
    let gid = okta_group(&gw, "Okta Old").await;
    assert_eq!(gw.app_team("Okta Old").await["member_count"], 0);
    let r = okta(
        &gw,
        Method::PATCH,
        &format!("/Groups/{gid}"),
        Some(patch(json!([{"op": "replace", "value": {"id": gid, "displayName": "Okta New"}}]))),
    )
    .await;
    r.expect_one_of(&[200, 204], "Okta rename");
    assert!(gw.app_teams("Okta Old").await.is_empty(), "old name gone");
    gw.app_team("Okta New").await;
    assert_eq!(gw.get(&format!("/Groups/{gid}")).await.body["displayName"], "Okta New");
}

#[tokio::test]
async fn membership_patch_removes_and_adds_in_one_request() {
    let gw = Gateway::demo();
    let mut uids = Vec::new();
    let mut app = Vec::new();
    for i in 0..3 {
        let login = format!("om{i}@example.com");
        uids.push(okta_user(&gw, &login).await);
        app.push(gw.app_account_id(&login).await);
    }
    let gid = okta_group(&gw, "Okta Members").await;
    let add01 = patch(json!([{"op": "add", "path": "members", "value": [
        {"value": uids[0], "display": "om0@example.com"},
        {"value": uids[1], "display": "om1@example.com"}
    ]}]));
    okta(&gw, Method::PATCH, &format!("/Groups/{gid}"), Some(add01)).await.expect_one_of(&[200, 204], "add two");
    assert_eq!(gw.app_member_set("Okta Members").await, sorted(&app[..2]));

    let body = patch(json!([
        {"op": "remove", "path": format!("members[value eq \"{}\"]", uids[0])},
        {"op": "add", "path": "members", "value": [{"value": uids[2], "display": "om2@example.com"}]}
    ]));
    let r = okta(&gw, Method::PATCH, &format!("/Groups/{gid}"), Some(body)).await;
    r.expect_one_of(&[200, 204], "remove + add");
    assert_eq!(gw.app_member_set("Okta Members").await, sorted(&app[1..]), "om0 out, om1 kept, om2 in");
    let read = gw.get(&format!("/Groups/{gid}")).await;
    assert_eq!(member_values(&read.body), sorted(&uids[1..]), "{:#}", read.body);
}

#[tokio::test]
async fn rename_sent_with_a_membership_change_applies_both() {
    let gw = Gateway::demo();
    let a = okta_user(&gw, "rn0@example.com").await;
    let b = okta_user(&gw, "rn1@example.com").await;
    let gid = okta_group(&gw, "Okta Combo").await;
    okta(
        &gw,
        Method::PATCH,
        &format!("/Groups/{gid}"),
        Some(patch(json!([{"op": "add", "path": "members", "value": [{"value": a, "display": "rn0"}]}]))),
    )
    .await
    .expect_one_of(&[200, 204], "add a");
    let body = patch(json!([
        {"op": "replace", "value": {"id": gid, "displayName": "Okta Combo 2"}},
        {"op": "remove", "path": format!("members[value eq \"{a}\"]")},
        {"op": "add", "path": "members", "value": [{"value": b, "display": "rn1"}]}
    ]));
    okta(&gw, Method::PATCH, &format!("/Groups/{gid}"), Some(body)).await.expect_one_of(&[200, 204], "rename + swap");
    assert!(gw.app_teams("Okta Combo").await.is_empty(), "renamed");
    assert_eq!(gw.app_member_set("Okta Combo 2").await, vec![gw.app_account_id("rn1@example.com").await]);
    let read = gw.get(&format!("/Groups/{gid}")).await;
    assert_eq!(read.body["displayName"], "Okta Combo 2", "{:#}", read.body);
    assert_eq!(member_values(&read.body), vec![b], "{:#}", read.body);
}

#[tokio::test]
async fn full_replace_of_members_sets_exactly_the_given_members() {
    let gw = Gateway::demo();
    let mut uids = Vec::new();
    let mut app = Vec::new();
    for i in 0..4 {
        let login = format!("fr{i}@example.com");
        uids.push(okta_user(&gw, &login).await);
        app.push(gw.app_account_id(&login).await);
    }
    let gid = okta_group(&gw, "Okta Replace").await;
    let first = patch(json!([{"op": "replace", "path": "members", "value": [
        {"value": uids[0], "display": "fr0"}, {"value": uids[1], "display": "fr1"}
    ]}]));
    okta(&gw, Method::PATCH, &format!("/Groups/{gid}"), Some(first)).await.expect_one_of(&[200, 204], "replace 1");
    assert_eq!(gw.app_member_set("Okta Replace").await, sorted(&app[..2]));

    let second = patch(json!([{"op": "replace", "path": "members", "value": [
        {"value": uids[1], "display": "fr1"}, {"value": uids[2], "display": "fr2"}, {"value": uids[3], "display": "fr3"}
    ]}]));
    okta(&gw, Method::PATCH, &format!("/Groups/{gid}"), Some(second)).await.expect_one_of(&[200, 204], "replace 2");
    assert_eq!(gw.app_member_set("Okta Replace").await, sorted(&app[1..]), "exactly the replacement set");
    let read = gw.get(&format!("/Groups/{gid}")).await;
    assert_eq!(member_values(&read.body), sorted(&uids[1..]), "{:#}", read.body);

    okta(
        &gw,
        Method::PATCH,
        &format!("/Groups/{gid}"),
        Some(patch(json!([{"op": "replace", "path": "members", "value": []}]))),
    )
    .await
    .expect_one_of(&[200, 204], "replace with none");
    assert!(gw.app_members("Okta Replace").await.is_empty(), "emptied");
}

#[tokio::test]
async fn on_prem_agent_test_reads_service_provider_config() {
    let gw = Gateway::demo();
    let r = okta(&gw, Method::GET, "/ServiceProviderConfig", None).await;
    r.expect(200, "ServiceProviderConfig");
    assert_eq!(
        r.body["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"]),
        "{:#}",
        r.body
    );
    assert_eq!(r.body["patch"]["supported"], true, "{:#}", r.body);
    assert_eq!(r.body["filter"]["supported"], true, "{:#}", r.body);
    assert_eq!(r.body["etag"]["supported"], true, "{:#}", r.body);
    assert_eq!(r.body["bulk"]["supported"], true, "{:#}", r.body);
    assert!(r.body["bulk"]["maxOperations"].as_u64().is_some_and(|n| n > 0), "{:#}", r.body);
    assert!(r.body["authenticationSchemes"].as_array().is_some_and(|a| !a.is_empty()), "{:#}", r.body);
    assert_eq!(gw.app_account_count().await, 0, "discovery touches nothing in the app");
}
