//! Groups as Microsoft Entra provisions them (/work/shared/entra-scim-behaviour.md b2–b6): create
//! with Entra's extra schema, the `excludedAttributes=members` lookups, member adds (several per
//! PATCH, `$ref: null`), both member-removal shapes, rename, delete. Every test checks the SCIM
//! answer and the demo app's teams and memberships.

mod common;

use common::*;
use reqwest::Method;
use serde_json::json;

/// Creates `n` users `{prefix}{i}@example.com`; returns (SCIM ids, app ids).
async fn users(gw: &Gateway, prefix: &str, n: usize) -> (Vec<String>, Vec<u64>) {
    let (mut ids, mut app) = (Vec::new(), Vec::new());
    for i in 0..n {
        let login = format!("{prefix}{i}@example.com");
        ids.push(gw.entra_user_id(&login).await);
        app.push(gw.app_account_id(&login).await);
    }
    (ids, app)
}

/// Entra's member add: `$ref` null, several members in one op.
fn add_members(ids: &[String]) -> serde_json::Value {
    let value: Vec<_> = ids.iter().map(|id| json!({"$ref": null, "value": id})).collect();
    json!([{"op": "Add", "path": "members", "value": value}])
}

#[tokio::test]
async fn create_with_the_entra_schemas_returns_201_and_an_empty_team() {
    let gw = Gateway::demo();
    let r = gw.entra_create_group("Sales").await;
    r.expect(201, "create group");
    assert!(!r.id().is_empty());
    assert_eq!(r.body["displayName"], "Sales", "{:#}", r.body);
    assert_eq!(r.body["externalId"], "ext-Sales", "{:#}", r.body);
    assert_eq!(r.body["meta"]["resourceType"], "Group", "{:#}", r.body);
    assert!(member_values(&r.body).is_empty(), "created without members: {:#}", r.body);
    let team = gw.app_team("Sales").await;
    assert_eq!(team["ext_ref"], "ext-Sales", "{team}");
    assert_eq!(team["member_count"], 0, "{team}");
}

#[tokio::test]
async fn duplicate_group_create_is_409_uniqueness() {
    let gw = Gateway::demo();
    gw.entra_group_id("Dupes").await;
    gw.entra_create_group("Dupes").await.expect_error(409, Some("uniqueness"), "second create of the same name");
    assert_eq!(gw.app_teams("Dupes").await.len(), 1);
    assert_eq!(gw.app_team_count().await, 1);
}

#[tokio::test]
async fn group_lookup_by_display_name_excludes_members_when_asked() {
    let gw = Gateway::demo();
    let (uids, _) = users(&gw, "look", 2).await;
    let gid = gw.entra_group_id("Lookup Team").await;
    gw.entra_group_id("Other Team").await;
    gw.patch_group(&gid, add_members(&uids)).await.expect(204, "add members");

    let r = gw.filter("Groups", r#"displayName eq "Lookup Team""#, "&excludedAttributes=members").await;
    r.expect(200, "Entra group lookup");
    assert_eq!(r.resource_ids(), vec![gid.clone()], "{:#}", r.body);
    let res = &r.resources()[0];
    assert_eq!(res["displayName"], "Lookup Team", "{:#}", r.body);
    assert!(res.get("members").is_none(), "members excluded: {:#}", r.body);

    let one = gw.get(&format!("/Groups/{gid}?excludedAttributes=members")).await;
    one.expect(200, "GET group excluding members");
    assert!(one.body.get("members").is_none(), "members excluded: {:#}", one.body);
    assert_eq!(one.body["displayName"], "Lookup Team", "{:#}", one.body);

    let full = gw.get(&format!("/Groups/{gid}")).await;
    assert_eq!(member_values(&full.body), sorted(&uids), "a plain GET shows members: {:#}", full.body);
    assert_eq!(gw.app_members("Lookup Team").await.len(), 2, "the app holds both members");

    let none = gw.filter("Groups", r#"displayName eq "No Such Team""#, "&excludedAttributes=members").await;
    none.expect(200, "lookup of an unknown group");
    assert_eq!(none.total(), 0, "{:#}", none.body);
}

#[tokio::test]
async fn add_members_with_null_ref_several_per_patch_answers_204() {
    let gw = Gateway::demo();
    let (uids, app_ids) = users(&gw, "add", 3).await;
    let gid = gw.entra_group_id("Adders").await;
    let r = gw.patch_group(&gid, add_members(&uids)).await;
    r.expect(204, "PATCH group: 204 advised, no member list");
    assert!(r.body.is_null(), "no body: {:#}", r.body);
    assert_eq!(gw.app_member_set("Adders").await, sorted(&app_ids), "all three added in the app");
    let read = gw.get(&format!("/Groups/{gid}")).await;
    assert_eq!(member_values(&read.body), sorted(&uids), "{:#}", read.body);

    // Adding a member again converges instead of failing (Entra retries).
    gw.patch_group(&gid, add_members(&uids[..1])).await.expect(204, "re-add an existing member");
    assert_eq!(gw.app_member_set("Adders").await, sorted(&app_ids), "still exactly three");
}

#[tokio::test]
async fn remove_with_a_value_list_removes_only_the_listed_members() {
    let gw = Gateway::demo();
    let (uids, app_ids) = users(&gw, "rm", 3).await;
    let gid = gw.entra_group_id("Removers").await;
    gw.patch_group(&gid, add_members(&uids)).await.expect(204, "add three");

    let r = gw.patch_group(&gid, json!([{"op": "Remove", "path": "members", "value": [{"value": uids[1]}]}])).await;
    r.expect(204, "Entra-default member removal");
    assert_eq!(
        gw.app_member_set("Removers").await,
        sorted(&[app_ids[0], app_ids[2]]),
        "only the listed member is removed (not all: MicrosoftDocs/azure-docs #30826)"
    );
    let read = gw.get(&format!("/Groups/{gid}")).await;
    assert_eq!(member_values(&read.body), sorted(&[uids[0].clone(), uids[2].clone()]), "{:#}", read.body);
    assert_eq!(gw.app_account_count().await, 3, "removal from a group deletes no account");
}

#[tokio::test]
async fn remove_with_a_value_filter_path_removes_that_member() {
    let gw = Gateway::demo();
    let (uids, app_ids) = users(&gw, "rf", 3).await;
    let gid = gw.entra_group_id("Filtered").await;
    gw.patch_group(&gid, add_members(&uids)).await.expect(204, "add three");

    let path = format!("members[value eq \"{}\"]", uids[0]);
    let r = gw.patch_group(&gid, json!([{"op": "remove", "path": path}])).await;
    r.expect(204, "RFC member removal by filter");
    assert_eq!(gw.app_member_set("Filtered").await, sorted(&app_ids[1..]), "only that member removed");
    let read = gw.get(&format!("/Groups/{gid}")).await;
    assert_eq!(member_values(&read.body), sorted(&uids[1..]), "{:#}", read.body);
}

#[tokio::test]
async fn remove_of_members_without_value_or_filter_empties_the_group() {
    let gw = Gateway::demo();
    let (uids, _) = users(&gw, "all", 2).await;
    let gid = gw.entra_group_id("Everyone").await;
    gw.patch_group(&gid, add_members(&uids)).await.expect(204, "add two");
    gw.patch_group(&gid, json!([{"op": "remove", "path": "members"}])).await.expect(204, "RFC remove all");
    assert!(gw.app_members("Everyone").await.is_empty(), "RFC 7644 §3.5.2.2: all members removed");
    let read = gw.get(&format!("/Groups/{gid}")).await;
    assert!(member_values(&read.body).is_empty(), "{:#}", read.body);
}

#[tokio::test]
async fn membership_check_filters_on_members_value() {
    let gw = Gateway::demo();
    let (uids, _) = users(&gw, "chk", 2).await;
    let gid = gw.entra_group_id("Checked").await;
    gw.patch_group(&gid, add_members(&uids[..1])).await.expect(204, "add one");
    let yes =
        gw.filter("Groups", &format!("id eq \"{gid}\" and members[value eq \"{}\"]", uids[0]), "&attributes=id").await;
    yes.expect(200, "member existence check (member)");
    assert_eq!(yes.resource_ids(), vec![gid.clone()], "{:#}", yes.body);
    let no =
        gw.filter("Groups", &format!("id eq \"{gid}\" and members[value eq \"{}\"]", uids[1]), "&attributes=id").await;
    no.expect(200, "member existence check (non-member)");
    assert_eq!(no.total(), 0, "{:#}", no.body);
    assert_eq!(gw.app_members("Checked").await.len(), 1);
}

#[tokio::test]
async fn rename_with_replace_display_name_answers_204_and_keeps_members() {
    let gw = Gateway::demo();
    let (uids, app_ids) = users(&gw, "ren", 2).await;
    let gid = gw.entra_group_id("Before").await;
    gw.patch_group(&gid, add_members(&uids)).await.expect(204, "add two");
    let r = gw.patch_group(&gid, json!([{"op": "Replace", "path": "displayName", "value": "After"}])).await;
    r.expect(204, "rename");
    assert!(gw.app_teams("Before").await.is_empty(), "old name gone from the app");
    let team = gw.app_team("After").await;
    assert_eq!(team["ext_ref"], "ext-Before", "other fields kept: {team}");
    assert_eq!(gw.app_member_set("After").await, sorted(&app_ids), "members kept");
    let read = gw.get(&format!("/Groups/{gid}")).await;
    assert_eq!(read.body["displayName"], "After", "{:#}", read.body);
    assert_eq!(member_values(&read.body), sorted(&uids), "{:#}", read.body);
}

#[tokio::test]
async fn delete_group_is_204_then_404_and_the_team_is_gone_but_users_stay() {
    let gw = Gateway::demo();
    let (uids, _) = users(&gw, "del", 2).await;
    let gid = gw.entra_group_id("Doomed").await;
    gw.patch_group(&gid, add_members(&uids)).await.expect(204, "add two");
    let r = gw.scim(Method::DELETE, &format!("/Groups/{gid}"), None).await;
    r.expect(204, "DELETE group");
    gw.get(&format!("/Groups/{gid}")).await.expect_error(404, None, "GET after DELETE");
    assert!(gw.app_teams("Doomed").await.is_empty(), "team deleted in the app");
    assert_eq!(gw.app_account_count().await, 2, "members' accounts stay");
    for u in &uids {
        gw.get(&format!("/Users/{u}")).await.expect(200, "member still readable");
    }
}

#[tokio::test]
async fn unknown_group_id_is_404_with_the_error_schema() {
    let gw = Gateway::demo();
    gw.entra_group_id("Exists").await;
    let missing = uuid::Uuid::new_v4().to_string();
    gw.get(&format!("/Groups/{missing}")).await.expect_error(404, None, "GET unknown group");
    gw.patch_group(&missing, json!([{"op": "Replace", "path": "displayName", "value": "X"}])).await.expect_error(
        404,
        None,
        "PATCH unknown group",
    );
    gw.scim(Method::DELETE, &format!("/Groups/{missing}"), None).await.expect_error(404, None, "DELETE unknown group");
    assert_eq!(gw.app_team_count().await, 1, "nothing else touched");
    assert!(gw.app_teams("X").await.is_empty());
}

#[tokio::test]
async fn adding_an_unknown_member_id_fails_without_touching_the_team() {
    let gw = Gateway::demo();
    let (uids, app_ids) = users(&gw, "unk", 1).await;
    let gid = gw.entra_group_id("Strict").await;
    gw.patch_group(&gid, add_members(&uids)).await.expect(204, "add one");
    let bogus = uuid::Uuid::new_v4().to_string();
    let r = gw.patch_group(&gid, add_members(&[bogus])).await;
    // RFC 7644 names no status for a dangling reference; 400 invalidValue and 404 are both errors.
    r.expect_one_of(&[400, 404], "member id that names no user");
    assert_eq!(r.body["schemas"], json!([ERROR]), "Error schema: {:#}", r.body);
    assert_eq!(gw.app_member_set("Strict").await, app_ids, "membership unchanged");
}
