//! Users as Microsoft Entra provisions them (/work/shared/entra-scim-behaviour.md b1–b6): the
//! connection test, matching queries, creates, every PATCH shape Entra sends (default and
//! `aadOptscim062020`), manager links, app roles, the null-update validator test, paging, and soft
//! versus hard deprovisioning. Every test checks the SCIM answer and the demo app's own state.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

/// The enterprise extension object of a SCIM user (null when absent).
fn enterprise(user: &Value) -> &Value {
    &user[ENTERPRISE]
}

/// The `value` of the user's work email, if any.
fn work_email(user: &Value) -> Option<String> {
    user["emails"].as_array()?.iter().find(|e| e["type"] == "work").and_then(|e| e["value"].as_str()).map(str::to_owned)
}

/// The `value` of the user's work phone, if any non-empty one.
fn work_phone(user: &Value) -> Option<String> {
    user["phoneNumbers"]
        .as_array()?
        .iter()
        .filter(|e| e["type"] == "work")
        .find_map(|e| e["value"].as_str().filter(|v| !v.is_empty()))
        .map(str::to_owned)
}

// ---------------------------------------------------------------------------------------------
// b1/b2: connection test and queries
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn test_connection_filter_on_a_random_guid_is_an_empty_200_list() {
    let gw = Gateway::demo();
    let guid = uuid::Uuid::new_v4().to_string();
    for attr in ["userName", "externalId"] {
        let r = gw.filter("Users", &format!("{attr} eq \"{guid}\""), "").await;
        r.expect(200, &format!("Test Connection filter on {attr}"));
        assert_eq!(r.headers["content-type"], "application/scim+json", "content type; body {:#}", r.body);
        assert_eq!(r.body["schemas"], json!([LIST_RESPONSE]), "ListResponse schema: {:#}", r.body);
        assert_eq!(r.total(), 0, "no match: {:#}", r.body);
        assert!(r.resources().is_empty(), "no resources: {:#}", r.body);
    }
    assert_eq!(gw.app_account_count().await, 0, "a query must not create anything in the app");
}

#[tokio::test]
async fn users_are_matched_by_user_name_external_id_and_work_email() {
    let gw = Gateway::demo();
    let id = gw.entra_user_id("match@example.com").await;
    gw.entra_user_id("other@example.com").await;
    for f in [
        r#"userName eq "match@example.com""#,
        r#"externalId eq "ext-match@example.com""#,
        r#"emails[type eq "work"].value eq "match@example.com""#,
    ] {
        let r = gw.filter("Users", f, "").await;
        r.expect(200, f);
        assert_eq!(r.resource_ids(), vec![id.clone()], "{f} must match exactly the one user: {:#}", r.body);
        assert_eq!(r.total(), 1, "{f}: {:#}", r.body);
        assert_eq!(r.resources()[0]["userName"], "match@example.com", "{f}: {:#}", r.body);
    }
    let by_id = gw.get(&format!("/Users/{id}")).await;
    by_id.expect(200, "GET by the linked id");
    let account = gw.app_account("match@example.com").await;
    assert_eq!(account["ext_ref"], "ext-match@example.com", "{account}");
    assert_eq!(account["email"], by_id.body["emails"][0]["value"], "app email vs SCIM: {:#}", by_id.body);
}

#[tokio::test]
async fn paging_with_start_index_and_count_covers_every_user_once_and_echoes_start_index() {
    let gw = Gateway::demo();
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(gw.entra_user_id(&format!("page{i}@example.com")).await);
    }
    let first = gw.get("/Users?startIndex=1&count=5").await;
    first.expect(200, "page 1");
    assert_eq!(first.body["startIndex"], 1, "startIndex echoed: {:#}", first.body);
    assert_eq!(first.body["itemsPerPage"], 5, "itemsPerPage: {:#}", first.body);
    assert_eq!(first.total(), 7, "totalResults: {:#}", first.body);
    assert_eq!(first.resources().len(), 5, "page 1 size: {:#}", first.body);

    let second = gw.get("/Users?startIndex=6&count=5").await;
    second.expect(200, "page 2");
    assert_eq!(second.body["startIndex"], 6, "startIndex echoed: {:#}", second.body);
    assert_eq!(second.body["itemsPerPage"], 2, "itemsPerPage: {:#}", second.body);
    assert_eq!(second.total(), 7, "totalResults: {:#}", second.body);

    let mut seen: Vec<String> = first.resource_ids().into_iter().chain(second.resource_ids()).collect();
    seen.sort();
    let mut want = created.clone();
    want.sort();
    assert_eq!(seen, want, "two pages must hold every user exactly once: {:#} {:#}", first.body, second.body);
    assert_eq!(gw.app_account_count().await, 7, "the app holds the 7 accounts");
}

// ---------------------------------------------------------------------------------------------
// b3/b6: create
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn create_with_the_entra_body_returns_201_with_id_and_writes_the_account() {
    let gw = Gateway::demo();
    let r = gw.entra_create_user("bjensen@example.com").await;
    r.expect(201, "create");
    assert_eq!(r.headers["content-type"], "application/scim+json");
    let id = r.id();
    assert!(!id.is_empty(), "{:#}", r.body);
    assert!(r.headers.get("location").is_some_and(|l| l.to_str().unwrap().ends_with(&format!("/Users/{id}"))));
    assert_eq!(r.body["userName"], "bjensen@example.com", "{:#}", r.body);
    assert_eq!(r.body["active"], true, "{:#}", r.body);
    assert_eq!(r.body["externalId"], "ext-bjensen@example.com", "{:#}", r.body);
    assert_eq!(r.body["name"]["givenName"], "Given", "{:#}", r.body);
    assert_eq!(r.body["meta"]["resourceType"], "User", "{:#}", r.body);
    assert_eq!(work_email(&r.body).as_deref(), Some("bjensen@example.com"), "{:#}", r.body);

    let account = gw.app_account("bjensen@example.com").await;
    assert_eq!(account["first_name"], "Given", "{account}");
    assert_eq!(account["last_name"], "Family", "{account}");
    assert_eq!(account["email"], "bjensen@example.com", "{account}");
    assert_eq!(account["status"], "active", "{account}");
    assert_eq!(account["ext_ref"], "ext-bjensen@example.com", "{account}");
}

#[tokio::test]
async fn create_with_a_single_app_role_assignment_is_accepted_though_the_app_holds_no_roles() {
    let gw = Gateway::demo();
    let body = json!({
        "schemas": [USER, ENTERPRISE],
        "externalId": "roles-ext",
        "userName": "roles@example.com",
        "active": true,
        "emails": [{"primary": true, "type": "work", "value": "roles@example.com"}],
        "name": {"familyName": "R", "givenName": "Ro"},
        "roles": [{"primary": true, "type": "WindowsAzureActiveDirectoryRole", "value": "Admin"}]
    });
    let r = gw.scim(Method::POST, "/Users", Some(body)).await;
    r.expect(201, "create with roles");
    let account = gw.app_account("roles@example.com").await;
    assert_eq!(account["first_name"], "Ro", "{account}");
}

#[tokio::test]
async fn duplicate_create_is_409_uniqueness_and_the_app_keeps_one_account() {
    let gw = Gateway::demo();
    gw.entra_user_id("dup@example.com").await;
    let again = gw.entra_create_user("dup@example.com").await;
    again.expect_error(409, Some("uniqueness"), "second create of the same userName");
    // The app compares logins case-insensitively, and so does SCIM for userName (RFC 7643 §4.1.1).
    let upper = gw.entra_create_user("DUP@example.com").await;
    upper.expect_error(409, Some("uniqueness"), "create differing only in case");
    assert_eq!(gw.app_accounts("dup@example.com").await.len(), 1, "still one account");
    assert_eq!(gw.app_account_count().await, 1, "nothing else created");
}

// ---------------------------------------------------------------------------------------------
// b4: PATCH shapes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn patch_with_capitalised_replace_and_add_updates_single_valued_attributes() {
    let gw = Gateway::demo();
    let id = gw.entra_user_id("old@example.com").await;
    let r = gw
        .patch_user(
            &id,
            json!([
                {"op": "Replace", "path": "userName", "value": "new@example.com"},
                {"op": "Add", "path": "nickName", "value": "Babs"}
            ]),
        )
        .await;
    r.expect_one_of(&[200, 204], "Replace userName + Add nickName");
    if r.status == 200 {
        assert_eq!(r.body["userName"], "new@example.com", "{:#}", r.body);
        assert_eq!(r.body["nickName"], "Babs", "{:#}", r.body);
    }
    let read = gw.get(&format!("/Users/{id}")).await;
    read.expect(200, "GET by id after the rename: the link is by id, not UPN");
    assert_eq!(read.body["userName"], "new@example.com", "{:#}", read.body);
    assert_eq!(read.body["nickName"], "Babs", "{:#}", read.body);
    let account = gw.app_account("new@example.com").await;
    assert_eq!(account["nick"], "Babs", "{account}");
    assert!(gw.app_accounts("old@example.com").await.is_empty(), "the old login is gone from the app");
}

#[tokio::test]
async fn patch_with_lowercase_add_under_the_compliance_flag_works_too() {
    let gw = Gateway::demo();
    let id = gw.entra_user_id("lower@example.com").await;
    let r = gw.patch_user(&id, json!([{"op": "add", "path": "nickName", "value": "Lo"}])).await;
    r.expect_one_of(&[200, 204], "lowercase add");
    assert_eq!(gw.get(&format!("/Users/{id}")).await.body["nickName"], "Lo");
    assert_eq!(gw.app_account("lower@example.com").await["nick"], "Lo");
}

#[tokio::test]
async fn replace_of_a_work_email_value_path_that_matches_nothing_creates_the_element() {
    let gw = Gateway::demo();
    // Entra skips null source attributes: a user without mail is created without `emails`.
    let body = json!({
        "schemas": [USER, ENTERPRISE],
        "externalId": "nomail",
        "userName": "nomail@example.com",
        "active": true,
        "name": {"familyName": "F", "givenName": "G"},
        "roles": []
    });
    let created = gw.scim(Method::POST, "/Users", Some(body)).await;
    created.expect(201, "create without emails");
    let id = created.id();
    assert!(gw.app_account("nomail@example.com").await["email"].is_null());

    // The address ops target an attribute the demo app does not hold: accepted and ignored.
    let r = gw
        .patch_user(
            &id,
            json!([
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "work@example.com"},
                {"op": "Add", "path": "addresses[type eq \"work\"].formatted", "value": "1 Main St"},
                {"op": "Add", "path": "addresses[type eq \"work\"].locality", "value": "Springfield"},
                {"op": "Add", "path": "addresses[type eq \"work\"].region", "value": "IL"}
            ]),
        )
        .await;
    r.expect_one_of(&[200, 204], "Replace on a value path matching nothing must create it, not 400 noTarget");
    let read = gw.get(&format!("/Users/{id}")).await;
    let emails = read.body["emails"].as_array().cloned().unwrap_or_default();
    assert_eq!(emails.len(), 1, "exactly one email element: {:#}", read.body);
    assert_eq!(work_email(&read.body).as_deref(), Some("work@example.com"), "{:#}", read.body);
    assert_eq!(gw.app_account("nomail@example.com").await["email"], "work@example.com");

    // A second Replace on the same value path updates that element instead of adding another.
    let r = gw
        .patch_user(
            &id,
            json!([{"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "w2@example.com"}]),
        )
        .await;
    r.expect_one_of(&[200, 204], "second Replace");
    let read = gw.get(&format!("/Users/{id}")).await;
    assert_eq!(read.body["emails"].as_array().map(Vec::len), Some(1), "{:#}", read.body);
    assert_eq!(work_email(&read.body).as_deref(), Some("w2@example.com"), "{:#}", read.body);
    assert_eq!(gw.app_account("nomail@example.com").await["email"], "w2@example.com");
}

#[tokio::test]
async fn enterprise_attributes_are_patched_by_full_urn_path() {
    let gw = Gateway::demo();
    let id = gw.entra_user_id("ent@example.com").await;
    let r = gw
        .patch_user(
            &id,
            json!([
                {"op": "Replace", "path": format!("{ENTERPRISE}:employeeNumber"), "value": "E-42"},
                {"op": "Add", "path": format!("{ENTERPRISE}:department"), "value": "Sales"},
                {"op": "Add", "path": format!("{ENTERPRISE}:costCenter"), "value": "CC1"}
            ]),
        )
        .await;
    r.expect_one_of(&[200, 204], "enterprise URN paths");
    let read = gw.get(&format!("/Users/{id}")).await;
    assert_eq!(enterprise(&read.body)["employeeNumber"], "E-42", "{:#}", read.body);
    assert_eq!(enterprise(&read.body)["department"], "Sales", "{:#}", read.body);
    assert!(
        read.body["schemas"].as_array().unwrap().iter().any(|s| s == ENTERPRISE),
        "schemas lists the extension: {:#}",
        read.body
    );
    let account = gw.app_account("ent@example.com").await;
    assert_eq!(account["employee_no"], "E-42", "{account}");
    assert_eq!(account["department"], "Sales", "{account}");
    assert_eq!(account["cost_center"], "CC1", "{account}");
}

#[tokio::test]
async fn default_multi_attribute_update_sends_one_op_per_attribute() {
    let gw = Gateway::demo();
    let id = gw.entra_user_id("multi@example.com").await;
    let r = gw
        .patch_user(
            &id,
            json!([
                {"op": "Replace", "path": "displayName", "value": "Multi Person"},
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "multi2@example.com"},
                {"op": "Replace", "path": "name.givenName", "value": "Multi"},
                {"op": "Replace", "path": "name.familyName", "value": "Person"},
                {"op": "Replace", "path": "externalId", "value": "ext-new"},
                {"op": "Replace", "path": format!("{ENTERPRISE}:employeeNumber"), "value": "7"}
            ]),
        )
        .await;
    r.expect_one_of(&[200, 204], "one op per attribute");
    let read = gw.get(&format!("/Users/{id}")).await;
    assert_eq!(read.body["displayName"], "Multi Person", "{:#}", read.body);
    assert_eq!(read.body["name"]["givenName"], "Multi", "{:#}", read.body);
    assert_eq!(read.body["name"]["familyName"], "Person", "{:#}", read.body);
    assert_eq!(read.body["externalId"], "ext-new", "{:#}", read.body);
    assert_eq!(work_email(&read.body).as_deref(), Some("multi2@example.com"), "{:#}", read.body);
    let account = gw.app_account("multi@example.com").await;
    assert_eq!(account["display"], "Multi Person", "{account}");
    assert_eq!(account["first_name"], "Multi", "{account}");
    assert_eq!(account["last_name"], "Person", "{account}");
    assert_eq!(account["email"], "multi2@example.com", "{account}");
    assert_eq!(account["ext_ref"], "ext-new", "{account}");
    assert_eq!(account["employee_no"], "7", "{account}");
}

#[tokio::test]
async fn no_path_replace_with_dotted_and_urn_keys_updates_each_attribute() {
    let gw = Gateway::demo();
    let id = gw.entra_user_id("flag@example.com").await;
    let r = gw
        .patch_user(
            &id,
            json!([
                {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "flag2@example.com"},
                {"op": "replace", "value": {
                    "displayName": "Flag Person",
                    "name.givenName": "Flag",
                    "name.familyName": "Person",
                    format!("{ENTERPRISE}:employeeNumber"): "99"
                }}
            ]),
        )
        .await;
    r.expect_one_of(&[200, 204], "aadOptscim062020 no-path replace");
    let read = gw.get(&format!("/Users/{id}")).await;
    assert_eq!(read.body["displayName"], "Flag Person", "{:#}", read.body);
    assert_eq!(read.body["name"]["givenName"], "Flag", "{:#}", read.body);
    assert_eq!(read.body["name"]["familyName"], "Person", "{:#}", read.body);
    assert_eq!(enterprise(&read.body)["employeeNumber"], "99", "{:#}", read.body);
    assert!(read.body.get("name.givenName").is_none(), "dotted keys are paths, not attributes: {:#}", read.body);
    let account = gw.app_account("flag@example.com").await;
    assert_eq!(account["display"], "Flag Person", "{account}");
    assert_eq!(account["first_name"], "Flag", "{account}");
    assert_eq!(account["last_name"], "Person", "{account}");
    assert_eq!(account["employee_no"], "99", "{account}");
    assert_eq!(account["email"], "flag2@example.com", "{account}");
    assert_eq!(account["ext_ref"], "ext-flag@example.com", "untouched attributes are kept: {account}");
}

#[tokio::test]
async fn name_formatted_sent_with_a_name_change_is_accepted_and_ignored() {
    // Entra's default mapping sends `name.formatted` (b3's create body carries it), so a name change
    // arrives as one op per attribute including it. The app holds no formatted name: ignore it.
    let gw = Gateway::demo();
    let id = gw.entra_user_id("formatted@example.com").await;
    let r = gw
        .patch_user(
            &id,
            json!([
                {"op": "Replace", "path": "name.givenName", "value": "Barbara"},
                {"op": "Replace", "path": "name.familyName", "value": "Jensen"},
                {"op": "Replace", "path": "name.formatted", "value": "Barbara Jensen"}
            ]),
        )
        .await;
    r.expect_one_of(&[200, 204], "name change with name.formatted (Entra default mapping)");
    let read = gw.get(&format!("/Users/{id}")).await;
    assert_eq!(read.body["name"]["givenName"], "Barbara", "{:#}", read.body);
    assert_eq!(read.body["name"]["familyName"], "Jensen", "{:#}", read.body);
    let account = gw.app_account("formatted@example.com").await;
    assert_eq!(account["first_name"], "Barbara", "{account}");
    assert_eq!(account["last_name"], "Jensen", "{account}");
}

#[tokio::test]
async fn no_path_replace_carrying_name_formatted_is_accepted_and_ignored() {
    let gw = Gateway::demo();
    let id = gw.entra_user_id("formatted2@example.com").await;
    let r = gw
        .patch_user(
            &id,
            json!([{"op": "replace", "value": {
                "name.givenName": "Babs",
                "name.familyName": "J",
                "name.formatted": "Babs J"
            }}]),
        )
        .await;
    r.expect_one_of(&[200, 204], "aadOptscim062020 no-path replace with name.formatted");
    let account = gw.app_account("formatted2@example.com").await;
    assert_eq!(account["first_name"], "Babs", "{account}");
    assert_eq!(account["last_name"], "J", "{account}");
}

// ---------------------------------------------------------------------------------------------
// b4: manager
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn manager_is_linked_by_add_with_an_array_of_reference_objects() {
    let gw = Gateway::demo();
    let mid = gw.entra_user_id("boss@example.com").await;
    let id = gw.entra_user_id("worker@example.com").await;
    let r = gw
        .patch_user(
            &id,
            json!([{"op": "Add", "path": "manager", "value": [
                {"$ref": format!("{}/Users/{mid}", gw.base()), "value": mid}
            ]}]),
        )
        .await;
    r.expect_one_of(&[200, 204], "Add manager as an array");
    let read = gw.get(&format!("/Users/{id}")).await;
    assert_eq!(enterprise(&read.body)["manager"]["value"], mid.as_str(), "{:#}", read.body);
    let boss = gw.app_account_id("boss@example.com").await;
    assert_eq!(gw.app_account("worker@example.com").await["manager_id"], boss, "app manager_id is the boss's app id");
}

#[tokio::test]
async fn manager_is_changed_by_replace_with_a_plain_id_on_the_enterprise_path() {
    let gw = Gateway::demo();
    let m1 = gw.entra_user_id("m1@example.com").await;
    let m2 = gw.entra_user_id("m2@example.com").await;
    let id = gw.entra_user_id("report@example.com").await;
    gw.patch_user(&id, json!([{"op": "Add", "path": "manager", "value": {"value": m1}}]))
        .await
        .expect_one_of(&[200, 204], "set manager as an object");
    let m1_app = gw.app_account_id("m1@example.com").await;
    assert_eq!(gw.app_account("report@example.com").await["manager_id"], m1_app, "manager set to m1");

    let r = gw.patch_user(&id, json!([{"op": "Replace", "path": format!("{ENTERPRISE}:manager"), "value": m2}])).await;
    r.expect_one_of(&[200, 204], "Replace manager with a bare id on the URN path");
    let read = gw.get(&format!("/Users/{id}")).await;
    assert_eq!(enterprise(&read.body)["manager"]["value"], m2.as_str(), "{:#}", read.body);
    let m2_app = gw.app_account_id("m2@example.com").await;
    assert_eq!(gw.app_account("report@example.com").await["manager_id"], m2_app, "manager changed to m2");
}

#[tokio::test]
async fn manager_is_removed_by_replace_with_an_empty_value() {
    let gw = Gateway::demo();
    let mid = gw.entra_user_id("lead@example.com").await;
    let id = gw.entra_user_id("member@example.com").await;
    gw.patch_user(&id, json!([{"op": "Add", "path": "manager", "value": [{"value": mid}]}]))
        .await
        .expect_one_of(&[200, 204], "set manager");
    assert!(gw.app_account("member@example.com").await["manager_id"].is_u64());

    let r = gw.patch_user(&id, json!([{"op": "Replace", "path": "manager", "value": ""}])).await;
    r.expect_one_of(&[200, 204], "Replace manager with an empty value");
    let read = gw.get(&format!("/Users/{id}")).await;
    assert!(is_empty(&enterprise(&read.body)["manager"]), "manager gone: {:#}", read.body);
    assert!(gw.app_account("member@example.com").await["manager_id"].is_null(), "app manager_id cleared");
    assert!(!gw.app_accounts("lead@example.com").await.is_empty(), "the manager account itself stays");
}

#[tokio::test]
async fn manager_reference_check_filters_by_id_and_manager_with_attributes_id() {
    let gw = Gateway::demo();
    let mid = gw.entra_user_id("chief@example.com").await;
    let other = gw.entra_user_id("notchief@example.com").await;
    let id = gw.entra_user_id("staff@example.com").await;
    gw.patch_user(&id, json!([{"op": "Add", "path": "manager", "value": [{"value": mid}]}]))
        .await
        .expect_one_of(&[200, 204], "set manager");

    let hit = gw.filter("Users", &format!("id eq \"{id}\" and manager eq \"{mid}\""), "&attributes=id").await;
    hit.expect(200, "manager reference check");
    assert_eq!(hit.resource_ids(), vec![id.clone()], "{:#}", hit.body);
    let res = &hit.resources()[0];
    assert!(res.get("userName").is_none(), "attributes=id projects away userName: {:#}", hit.body);
    assert!(res.get(ENTERPRISE).is_none(), "attributes=id projects away the manager: {:#}", hit.body);

    let miss = gw.filter("Users", &format!("id eq \"{id}\" and manager eq \"{other}\""), "&attributes=id").await;
    miss.expect(200, "manager reference check with another manager");
    assert_eq!(miss.total(), 0, "{:#}", miss.body);
    assert!(miss.resources().is_empty(), "{:#}", miss.body);

    let chief = gw.app_account_id("chief@example.com").await;
    assert_eq!(gw.app_account("staff@example.com").await["manager_id"], chief);
}

// ---------------------------------------------------------------------------------------------
// b4: roles the app does not hold
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn role_patches_are_accepted_and_ignored_when_the_app_holds_no_roles() {
    let gw = Gateway::demo();
    let id = gw.entra_user_id("roleuser@example.com").await;
    let before = without_updated_at(gw.app_account("roleuser@example.com").await);
    let role = r#"{"id":"7c1e8f30-0000-4000-8000-000000000001","value":"25","displayName":"Role1234"}"#;
    let shapes = [
        // AppRoleAssignmentsComplex: Add with a JSON-encoded string.
        json!([{"op": "Add", "path": "roles", "value": [{"value": role}]}]),
        // AssertiveAppRoleAssignmentsComplex.
        json!([{"op": "replace", "path": "roles", "value": [
            {"primary": false, "type": "WindowsAzureActiveDirectoryRole", "display": "Admin", "value": "Admin"},
            {"primary": false, "type": "WindowsAzureActiveDirectoryRole", "display": "User", "value": "User"}
        ]}]),
        json!([{"op": "Replace", "path": "roles[primary eq \"True\"].value", "value": "Admin"}]),
    ];
    for ops in shapes {
        let r = gw.patch_user(&id, ops.clone()).await;
        r.expect_one_of(&[200, 204], &format!("roles PATCH {ops}"));
        let after = without_updated_at(gw.app_account("roleuser@example.com").await);
        assert_eq!(after, before, "nothing in the app changes for {ops}");
    }
    // Mixed with an attribute the app holds: that one still applies.
    let r = gw
        .patch_user(
            &id,
            json!([
                {"op": "Add", "path": "roles", "value": [{"value": role}]},
                {"op": "Replace", "path": "title", "value": "Engineer"}
            ]),
        )
        .await;
    r.expect_one_of(&[200, 204], "roles + title");
    let account = gw.app_account("roleuser@example.com").await;
    assert_eq!(account["job_title"], "Engineer", "{account}");
    assert_eq!(account["first_name"], before["first_name"], "{account}");
    let read = gw.get(&format!("/Users/{id}")).await;
    assert_eq!(read.body["title"], "Engineer", "{:#}", read.body);
}

// ---------------------------------------------------------------------------------------------
// b4: SCIM_Null_Update_Test
// ---------------------------------------------------------------------------------------------

/// Sets every optional attribute the null-update test clears.
async fn fill_optional_attributes(gw: &Gateway, id: &str) {
    gw.patch_user(
        id,
        json!([
            {"op": "Add", "path": "nickName", "value": "Nick"},
            {"op": "Add", "path": "title", "value": "Title"},
            {"op": "Add", "path": "displayName", "value": "Display"},
            {"op": "Add", "path": "phoneNumbers[type eq \"work\"].value", "value": "+1 555 0100"},
            {"op": "Add", "path": format!("{ENTERPRISE}:employeeNumber"), "value": "E1"},
            {"op": "Add", "path": format!("{ENTERPRISE}:department"), "value": "D1"}
        ]),
    )
    .await
    .expect_one_of(&[200, 204], "fill optional attributes");
    let account = gw.app_account("nullme@example.com").await;
    for f in ["nick", "job_title", "display", "phone", "employee_no", "department"] {
        assert!(account[f].is_string(), "precondition: `{f}` set in {account}");
    }
}

/// Clears them with `value` (`""` or `null`) and checks SCIM and the app read back empty.
async fn clear_and_check(gw: &Gateway, id: &str, value: Value) {
    let r = gw
        .patch_user(
            id,
            json!([
                {"op": "Replace", "path": "nickName", "value": value},
                {"op": "Replace", "path": "title", "value": value},
                {"op": "Replace", "path": "displayName", "value": value},
                {"op": "Replace", "path": "phoneNumbers[type eq \"work\"].value", "value": value},
                {"op": "Replace", "path": format!("{ENTERPRISE}:employeeNumber"), "value": value},
                {"op": "Replace", "path": format!("{ENTERPRISE}:department"), "value": value}
            ]),
        )
        .await;
    r.expect_one_of(&[200, 204], &format!("null update with {value}"));
    let read = gw.get(&format!("/Users/{id}")).await;
    read.expect(200, "read back");
    for a in ["nickName", "title", "displayName"] {
        assert!(is_empty(&read.body[a]), "`{a}` reads back empty after {value}: {:#}", read.body);
    }
    assert_eq!(work_phone(&read.body), None, "work phone empty after {value}: {:#}", read.body);
    assert!(is_empty(&enterprise(&read.body)["employeeNumber"]), "employeeNumber after {value}: {:#}", read.body);
    assert!(is_empty(&enterprise(&read.body)["department"]), "department after {value}: {:#}", read.body);
    let account = gw.app_account("nullme@example.com").await;
    for f in ["nick", "job_title", "display", "phone", "employee_no", "department"] {
        assert!(account[f].is_null(), "app `{f}` is null after {value}: {account}");
    }
    assert_eq!(account["login"], "nullme@example.com", "required fields untouched: {account}");
    assert_eq!(account["status"], "active", "{account}");
}

#[tokio::test]
async fn null_update_test_clears_attributes_with_empty_strings_then_with_nulls() {
    let gw = Gateway::demo();
    let id = gw.entra_user_id("nullme@example.com").await;
    fill_optional_attributes(&gw, &id).await;
    clear_and_check(&gw, &id, json!("")).await;
    fill_optional_attributes(&gw, &id).await;
    clear_and_check(&gw, &id, Value::Null).await;
}

// ---------------------------------------------------------------------------------------------
// b5: deprovisioning
// ---------------------------------------------------------------------------------------------

/// Asserts the user reads back (by id and by filter) with `active` = `want`, and the app status.
async fn check_active(gw: &Gateway, id: &str, login: &str, want: bool) {
    let read = gw.get(&format!("/Users/{id}")).await;
    read.expect(200, "a disabled user is still readable");
    assert_eq!(read.body["active"], want, "active by id: {:#}", read.body);
    let listed = gw.filter("Users", &format!("userName eq \"{login}\""), "").await;
    listed.expect(200, "filter");
    assert_eq!(listed.resource_ids(), vec![id.to_owned()], "filter still returns the user: {:#}", listed.body);
    assert_eq!(listed.resources()[0]["active"], want, "active in the list: {:#}", listed.body);
    let status = if want { "active" } else { "suspended" };
    assert_eq!(gw.app_account(login).await["status"], status, "app status");
}

#[tokio::test]
async fn disable_with_the_string_false_is_a_soft_delete_and_true_re_enables() {
    let gw = Gateway::demo();
    let id = gw.entra_user_id("soft@example.com").await;
    let r = gw.patch_user(&id, json!([{"op": "Replace", "path": "active", "value": "False"}])).await;
    r.expect_one_of(&[200, 204], "disable with \"False\"");
    if r.status == 200 {
        assert_eq!(r.body["active"], false, "{:#}", r.body);
    }
    check_active(&gw, &id, "soft@example.com", false).await;
    let r = gw.patch_user(&id, json!([{"op": "Replace", "path": "active", "value": "True"}])).await;
    r.expect_one_of(&[200, 204], "re-enable with \"True\"");
    check_active(&gw, &id, "soft@example.com", true).await;
}

#[tokio::test]
async fn disable_with_a_boolean_under_the_compliance_flag_and_re_enable() {
    let gw = Gateway::demo();
    let id = gw.entra_user_id("softb@example.com").await;
    gw.patch_user(&id, json!([{"op": "replace", "path": "active", "value": false}]))
        .await
        .expect_one_of(&[200, 204], "disable with false");
    check_active(&gw, &id, "softb@example.com", false).await;
    // Case-insensitive string parsing.
    gw.patch_user(&id, json!([{"op": "Replace", "path": "active", "value": "true"}]))
        .await
        .expect_one_of(&[200, 204], "re-enable with \"true\"");
    check_active(&gw, &id, "softb@example.com", true).await;
}

#[tokio::test]
async fn delete_is_204_then_the_user_is_404_and_gone_from_the_app() {
    let gw = Gateway::demo();
    let id = gw.entra_user_id("hard@example.com").await;
    let keep = gw.entra_user_id("keep@example.com").await;
    let r = gw.scim(Method::DELETE, &format!("/Users/{id}"), None).await;
    r.expect(204, "DELETE");
    assert!(r.body.is_null(), "no body on 204: {:#}", r.body);
    gw.get(&format!("/Users/{id}")).await.expect_error(404, None, "GET after DELETE");
    let listed = gw.filter("Users", r#"userName eq "hard@example.com""#, "").await;
    listed.expect(200, "filter after DELETE");
    assert_eq!(listed.total(), 0, "{:#}", listed.body);
    gw.scim(Method::DELETE, &format!("/Users/{id}"), None).await.expect_error(404, None, "second DELETE");
    assert!(gw.app_accounts("hard@example.com").await.is_empty(), "account deleted in the app");
    assert_eq!(gw.get(&format!("/Users/{keep}")).await.status, 200, "other users stay");
    assert_eq!(gw.app_account_count().await, 1);
}

#[tokio::test]
async fn unknown_user_id_is_404_with_the_error_schema() {
    let gw = Gateway::demo();
    gw.entra_user_id("present@example.com").await;
    let missing = uuid::Uuid::new_v4();
    gw.get(&format!("/Users/{missing}")).await.expect_error(404, None, "GET unknown id");
    gw.patch_user(&missing.to_string(), json!([{"op": "Replace", "path": "active", "value": "False"}]))
        .await
        .expect_error(404, None, "PATCH unknown id");
    assert_eq!(gw.app_account("present@example.com").await["status"], "active", "nothing else touched");
    assert_eq!(gw.app_account_count().await, 1);
}
