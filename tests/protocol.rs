//! RFC 7644 protocol features beyond what Entra and Okta exercise: ETags and `If-Match` (§3.14),
//! attribute projection (§3.4.2.5), `POST /.search` (§3.4.3), sorting (§3.4.2.3), filter errors
//! (§3.4.2.2, §3.12), Bulk with `bulkId` references, `failOnErrors` and `maxOperations` (§3.7),
//! and schema discovery (§4). Every test checks the SCIM answer and the demo app's own state.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// ETag / If-Match
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn etag_header_equals_meta_version_and_changes_on_write() {
    let gw = Gateway::demo();
    let created = gw.entra_create_user("etag@example.com").await;
    created.expect(201, "create");
    let id = created.id();
    let e_create = created.etag().unwrap_or_else(|| panic!("ETag on create; headers {:?}", created.headers));
    assert_eq!(created.body["meta"]["version"], e_create.as_str(), "create: ETag = meta.version: {:#}", created.body);

    let read = gw.get(&format!("/Users/{id}")).await;
    read.expect(200, "GET");
    let e_read = read.etag().unwrap_or_else(|| panic!("ETag on GET; headers {:?}", read.headers));
    assert_eq!(read.body["meta"]["version"], e_read.as_str(), "GET: ETag = meta.version: {:#}", read.body);
    assert_eq!(e_read, e_create, "unchanged resource, unchanged version");

    gw.patch_user(&id, json!([{"op": "Replace", "path": "nickName", "value": "V2"}]))
        .await
        .expect_one_of(&[200, 204], "PATCH");
    let after = gw.get(&format!("/Users/{id}")).await;
    let e_after = after.etag().expect("ETag after PATCH");
    assert_ne!(e_after, e_read, "a write changes the version");
    assert_eq!(after.body["meta"]["version"], e_after.as_str(), "{:#}", after.body);
    assert_eq!(gw.app_account("etag@example.com").await["nick"], "V2");
}

/// Creates a user, then changes it once so that its first version is stale. Returns (id, stale
/// ETag, current ETag).
async fn user_with_stale_version(gw: &Gateway, login: &str) -> (String, String, String) {
    let created = gw.entra_create_user(login).await;
    created.expect(201, "create");
    let id = created.id();
    let stale = created.etag().expect("ETag on create");
    let r = gw.patch_user(&id, json!([{"op": "Replace", "path": "title", "value": "v2"}])).await;
    r.expect_one_of(&[200, 204], "second version");
    let current = gw.get(&format!("/Users/{id}")).await.etag().expect("ETag");
    assert_ne!(stale, current, "precondition: the version moved on");
    (id, stale, current)
}

#[tokio::test]
async fn stale_if_match_is_412_for_put_patch_and_delete_and_the_app_is_unchanged() {
    let gw = Gateway::demo();
    let (id, stale, _) = user_with_stale_version(&gw, "stale@example.com").await;
    let before = gw.app_account("stale@example.com").await;
    let path = format!("/Users/{id}");

    let mut body = gw.get(&path).await.body;
    body["title"] = json!("from a stale PUT");
    let put = gw.scim_as(TOKEN, Method::PUT, &path, Some(body), &[("If-Match", &stale)]).await;
    put.expect_error(412, None, "PUT with a stale If-Match");

    let ops = patch(json!([{"op": "Replace", "path": "title", "value": "from a stale PATCH"}]));
    let p = gw.scim_as(TOKEN, Method::PATCH, &path, Some(ops), &[("If-Match", &stale)]).await;
    p.expect_error(412, None, "PATCH with a stale If-Match");

    let d = gw.scim_as(TOKEN, Method::DELETE, &path, None, &[("If-Match", &stale)]).await;
    d.expect_error(412, None, "DELETE with a stale If-Match");

    assert_eq!(gw.app_account("stale@example.com").await, before, "the app is untouched by refused writes");
    assert_eq!(gw.get(&path).await.body["title"], "v2");
}

#[tokio::test]
async fn matching_if_match_lets_put_and_patch_through() {
    let gw = Gateway::demo();
    let (id, _, current) = user_with_stale_version(&gw, "match-etag@example.com").await;
    let path = format!("/Users/{id}");

    let mut body = gw.get(&path).await.body;
    body["title"] = json!("PUT ok");
    let put = gw.scim_as(TOKEN, Method::PUT, &path, Some(body), &[("If-Match", &current)]).await;
    put.expect(200, "PUT with the current If-Match");
    assert_eq!(put.body["title"], "PUT ok", "{:#}", put.body);
    let after_put = put.etag().expect("ETag on PUT");
    assert_ne!(after_put, current, "PUT makes a new version");
    assert_eq!(put.body["meta"]["version"], after_put.as_str(), "{:#}", put.body);
    assert_eq!(gw.app_account("match-etag@example.com").await["job_title"], "PUT ok");

    let ops = patch(json!([{"op": "Replace", "path": "title", "value": "PATCH ok"}]));
    let p = gw.scim_as(TOKEN, Method::PATCH, &path, Some(ops), &[("If-Match", &after_put)]).await;
    p.expect_one_of(&[200, 204], "PATCH with the current If-Match");
    assert_eq!(gw.app_account("match-etag@example.com").await["job_title"], "PATCH ok");

    let current = gw.get(&path).await.etag().expect("ETag");
    let d = gw.scim_as(TOKEN, Method::DELETE, &path, None, &[("If-Match", &current)]).await;
    d.expect(204, "DELETE with the current If-Match");
    assert!(gw.app_accounts("match-etag@example.com").await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// attributes / excludedAttributes
// ---------------------------------------------------------------------------------------------

async fn rich_user(gw: &Gateway, login: &str) -> String {
    let id = gw.entra_user_id(login).await;
    gw.patch_user(
        &id,
        json!([
            {"op": "Add", "path": "title", "value": "Engineer"},
            {"op": "Add", "path": format!("{ENTERPRISE}:employeeNumber"), "value": "E7"}
        ]),
    )
    .await
    .expect_one_of(&[200, 204], "enrich");
    id
}

#[tokio::test]
async fn get_with_attributes_returns_only_those_and_the_always_returned_id() {
    let gw = Gateway::demo();
    let id = rich_user(&gw, "proj@example.com").await;
    let r = gw.get(&format!("/Users/{id}?attributes=userName,name.givenName")).await;
    r.expect(200, "GET with attributes");
    assert_eq!(r.body["id"], id.as_str(), "id is returned always: {:#}", r.body);
    assert_eq!(r.body["userName"], "proj@example.com", "{:#}", r.body);
    assert_eq!(r.body["name"]["givenName"], "Given", "{:#}", r.body);
    for absent in ["emails", "active", "title", "externalId", ENTERPRISE] {
        assert!(r.body.get(absent).is_none(), "`{absent}` not requested: {:#}", r.body);
    }
    assert!(r.body["name"].get("familyName").is_none(), "only name.givenName requested: {:#}", r.body);
    let account = gw.app_account("proj@example.com").await;
    assert_eq!(account["job_title"], "Engineer", "projection is a view, the app keeps everything: {account}");
}

#[tokio::test]
async fn get_with_excluded_attributes_drops_them_but_never_id() {
    let gw = Gateway::demo();
    let id = rich_user(&gw, "excl@example.com").await;
    let r = gw.get(&format!("/Users/{id}?excludedAttributes=emails,name,{ENTERPRISE}:employeeNumber,id")).await;
    r.expect(200, "GET with excludedAttributes");
    assert_eq!(r.body["id"], id.as_str(), "id cannot be excluded (returned always): {:#}", r.body);
    assert_eq!(r.body["userName"], "excl@example.com", "{:#}", r.body);
    assert_eq!(r.body["title"], "Engineer", "{:#}", r.body);
    assert!(r.body.get("emails").is_none(), "{:#}", r.body);
    assert!(r.body.get("name").is_none(), "{:#}", r.body);
    assert!(r.body[ENTERPRISE].get("employeeNumber").is_none(), "{:#}", r.body);
    let account = gw.app_account("excl@example.com").await;
    assert_eq!(account["employee_no"], "E7", "{account}");
    assert_eq!(account["email"], "excl@example.com", "{account}");
}

#[tokio::test]
async fn list_with_attributes_projects_every_resource() {
    let gw = Gateway::demo();
    for i in 0..3 {
        gw.entra_user_id(&format!("lp{i}@example.com")).await;
    }
    let r = gw.get("/Users?attributes=userName").await;
    r.expect(200, "list with attributes");
    assert_eq!(r.resources().len(), 3, "{:#}", r.body);
    for res in r.resources() {
        assert!(res["id"].is_string(), "{res}");
        assert!(res["userName"].as_str().is_some_and(|u| u.starts_with("lp")), "{res}");
        assert!(res.get("emails").is_none() && res.get("name").is_none(), "projected: {res}");
    }
    assert_eq!(gw.app_account_count().await, 3);
}

// ---------------------------------------------------------------------------------------------
// POST /.search and sortBy
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn post_search_filters_sorts_pages_and_projects() {
    let gw = Gateway::demo();
    for name in ["srch-c", "srch-a", "other-x", "srch-b"] {
        gw.entra_user_id(&format!("{name}@example.com")).await;
    }
    let body = json!({
        "schemas": [SEARCH_REQUEST],
        "filter": "userName sw \"srch\"",
        "sortBy": "userName",
        "attributes": ["userName"],
        "startIndex": 1,
        "count": 2
    });
    let r = gw.scim(Method::POST, "/Users/.search", Some(body)).await;
    r.expect(200, "POST /Users/.search");
    assert_eq!(r.body["schemas"], json!([LIST_RESPONSE]), "{:#}", r.body);
    assert_eq!(r.total(), 3, "three match the filter: {:#}", r.body);
    assert_eq!(r.body["startIndex"], 1, "{:#}", r.body);
    let names: Vec<Value> = r.resources().iter().map(|x| x["userName"].clone()).collect();
    assert_eq!(names, vec![json!("srch-a@example.com"), json!("srch-b@example.com")], "{:#}", r.body);
    assert!(r.resources().iter().all(|x| x.get("emails").is_none()), "projected: {:#}", r.body);
    assert_eq!(gw.app_account_count().await, 4, "a search creates nothing");
}

#[tokio::test]
async fn sort_by_user_name_ascending_and_descending() {
    let gw = Gateway::demo();
    for name in ["sort-b", "sort-c", "sort-a"] {
        gw.entra_user_id(&format!("{name}@example.com")).await;
    }
    let names = |r: &Resp| -> Vec<String> {
        r.resources().iter().map(|x| x["userName"].as_str().unwrap_or_default().to_owned()).collect()
    };
    let asc = gw.get("/Users?sortBy=userName").await;
    asc.expect(200, "sortBy ascending");
    assert_eq!(names(&asc), ["sort-a@example.com", "sort-b@example.com", "sort-c@example.com"], "{:#}", asc.body);
    let desc = gw.get("/Users?sortBy=userName&sortOrder=descending").await;
    desc.expect(200, "sortBy descending");
    assert_eq!(names(&desc), ["sort-c@example.com", "sort-b@example.com", "sort-a@example.com"], "{:#}", desc.body);
    let paged = gw.get("/Users?sortBy=userName&startIndex=2&count=1").await;
    paged.expect(200, "sorted page");
    assert_eq!(names(&paged), ["sort-b@example.com"], "{:#}", paged.body);
    assert_eq!(paged.body["startIndex"], 2, "{:#}", paged.body);
    // The app lists by id, i.e. creation order: the sort is the gateway's.
    let (_, app) = gw.app_get("/api/v1/accounts").await;
    assert_eq!(app["accounts"][0]["login"], "sort-b@example.com", "{app}");
}

// ---------------------------------------------------------------------------------------------
// filter errors
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn malformed_filter_is_400_invalid_filter_with_a_detail_naming_the_position() {
    let gw = Gateway::demo();
    gw.entra_user_id("f@example.com").await;
    let r = gw.filter("Users", r#"userName equals "f@example.com""#, "").await;
    r.expect_error(400, Some("invalidFilter"), "unknown operator");
    let detail = r.body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("position 9"), "detail names the position of `equals` (9): {:#}", r.body);
    for bad in [r#"userName eq"#, r#"(userName eq "x""#, r#"userName eq "unterminated"#, r#"emails[type eq "work""#] {
        let r = gw.filter("Users", bad, "").await;
        r.expect_error(400, Some("invalidFilter"), bad);
        assert!(r.body["detail"].as_str().is_some_and(|d| d.contains("position")), "{bad}: {:#}", r.body);
    }
    assert_eq!(gw.app_account_count().await, 1);
}

#[tokio::test]
async fn unknown_or_unsupported_attribute_in_a_filter_is_400_invalid_filter() {
    let gw = Gateway::demo();
    gw.entra_user_id("u@example.com").await;
    let r = gw.filter("Users", r#"noSuchAttribute eq "x""#, "").await;
    r.expect_error(400, Some("invalidFilter"), "unknown attribute");
    assert!(r.body["detail"].as_str().is_some_and(|d| d.contains("noSuchAttribute")), "names it: {:#}", r.body);
    // A standard attribute the demo app does not hold cannot be filtered on.
    let r = gw.filter("Users", r#"addresses[type eq "work"].locality eq "x""#, "").await;
    r.expect_error(400, Some("invalidFilter"), "attribute the app does not hold");
    // An operator that does not apply to the attribute's type.
    let r = gw.filter("Users", "active gt true", "").await;
    r.expect_error(400, Some("invalidFilter"), "ordering on a boolean");
    let r = gw.filter("Groups", r#"noSuch eq "x""#, "").await;
    r.expect_error(400, Some("invalidFilter"), "unknown group attribute");
    assert_eq!(gw.app_account_count().await, 1);
}

// ---------------------------------------------------------------------------------------------
// Bulk
// ---------------------------------------------------------------------------------------------

fn bulk_user(bulk_id: &str, login: &str) -> Value {
    json!({
        "method": "POST", "path": "/Users", "bulkId": bulk_id,
        "data": {"schemas": [USER], "userName": login, "active": true, "name": {"givenName": "B", "familyName": "K"}}
    })
}

/// The id at the end of a bulk result's `location`.
fn location_id(op: &Value) -> String {
    op["location"].as_str().and_then(|l| l.rsplit('/').next()).unwrap_or_else(|| panic!("location in {op}")).to_owned()
}

#[tokio::test]
async fn bulk_creates_a_group_whose_members_reference_a_user_by_bulk_id() {
    let gw = Gateway::demo();
    // The group comes first: the gateway must create the user it references before it.
    let body = json!({
        "schemas": [BULK_REQUEST],
        "Operations": [
            {"method": "POST", "path": "/Groups", "bulkId": "g1",
             "data": {"schemas": [GROUP], "displayName": "Bulk Team", "members": [{"type": "User", "value": "bulkId:u1"}]}},
            bulk_user("u1", "bulk1@example.com"),
            {"method": "PATCH", "path": "/Users/bulkId:u1",
             "data": patch(json!([{"op": "Add", "path": "nickName", "value": "Bulky"}]))}
        ]
    });
    let r = gw.scim(Method::POST, "/Bulk", Some(body)).await;
    r.expect(200, "bulk");
    assert_eq!(r.body["schemas"], json!([BULK_RESPONSE]), "{:#}", r.body);
    let ops = r.body["Operations"].as_array().cloned().unwrap_or_default();
    assert_eq!(ops.len(), 3, "{:#}", r.body);
    let by_bulk_id = |b: &str| ops.iter().find(|o| o["bulkId"] == b).cloned().unwrap_or_else(|| panic!("{b}"));
    let (g, u) = (by_bulk_id("g1"), by_bulk_id("u1"));
    assert_eq!(g["status"], "201", "{:#}", r.body);
    assert_eq!(u["status"], "201", "{:#}", r.body);
    let patched = ops.iter().find(|o| o["method"] == "PATCH").expect("PATCH result");
    assert!(patched["status"] == "200" || patched["status"] == "204", "{:#}", r.body);
    let (gid, uid) = (location_id(&g), location_id(&u));

    let account = gw.app_account("bulk1@example.com").await;
    assert_eq!(account["nick"], "Bulky", "the PATCH by bulkId path applied: {account}");
    let app_id = account["id"].as_u64().unwrap();
    assert_eq!(gw.app_members("Bulk Team").await, vec![app_id], "the team holds the bulk-created account");
    let group = gw.get(&format!("/Groups/{gid}")).await;
    group.expect(200, "GET the bulk group");
    assert_eq!(group.body["members"][0]["value"], uid.as_str(), "{:#}", group.body);
}

#[tokio::test]
async fn bulk_fail_on_errors_stops_after_that_many_errors() {
    let gw = Gateway::demo();
    gw.entra_user_id("taken@example.com").await;
    let body = json!({
        "schemas": [BULK_REQUEST],
        "failOnErrors": 1,
        "Operations": [bulk_user("dup", "taken@example.com"), bulk_user("later", "later@example.com")]
    });
    let r = gw.scim(Method::POST, "/Bulk", Some(body)).await;
    r.expect(200, "bulk with failOnErrors");
    let ops = r.body["Operations"].as_array().cloned().unwrap_or_default();
    assert_eq!(ops.len(), 1, "processing stops after the first error: {:#}", r.body);
    assert_eq!(ops[0]["bulkId"], "dup", "{:#}", r.body);
    assert_eq!(ops[0]["status"], "409", "{:#}", r.body);
    assert_eq!(ops[0]["response"]["scimType"], "uniqueness", "{:#}", r.body);
    assert!(gw.app_accounts("later@example.com").await.is_empty(), "the later operation was not attempted");

    // Without failOnErrors every operation is attempted.
    let body = json!({
        "schemas": [BULK_REQUEST],
        "Operations": [bulk_user("dup", "taken@example.com"), bulk_user("later", "later@example.com")]
    });
    let r = gw.scim(Method::POST, "/Bulk", Some(body)).await;
    r.expect(200, "bulk without failOnErrors");
    let ops = r.body["Operations"].as_array().cloned().unwrap_or_default();
    assert_eq!(ops.len(), 2, "{:#}", r.body);
    assert_eq!(gw.app_accounts("later@example.com").await.len(), 1, "the second create went through");
}

#[tokio::test]
async fn bulk_over_max_operations_is_413_and_nothing_is_created() {
    let gw = Gateway::demo();
    let spc = gw.get("/ServiceProviderConfig").await;
    spc.expect(200, "ServiceProviderConfig");
    let max = spc.body["bulk"]["maxOperations"].as_u64().unwrap_or_else(|| panic!("{:#}", spc.body)) as usize;
    let ops: Vec<Value> = (0..=max).map(|i| bulk_user(&format!("b{i}"), &format!("many{i}@example.com"))).collect();
    let body = json!({"schemas": [BULK_REQUEST], "Operations": ops});
    let r = gw.scim(Method::POST, "/Bulk", Some(body)).await;
    r.expect_error(413, None, &format!("{} operations with maxOperations {max}", max + 1));
    assert_eq!(gw.app_account_count().await, 0, "nothing created");
}

// ---------------------------------------------------------------------------------------------
// discovery and content type
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn schemas_and_resource_types_describe_users_groups_and_the_enterprise_extension() {
    let gw = Gateway::demo();
    let s = gw.get("/Schemas").await;
    s.expect(200, "GET /Schemas");
    assert_eq!(s.headers["content-type"], "application/scim+json");
    let ids: Vec<String> = s.resources().iter().map(|x| x["id"].as_str().unwrap_or_default().to_owned()).collect();
    for want in [USER, GROUP, ENTERPRISE] {
        assert!(ids.iter().any(|i| i == want), "{want} in /Schemas: {ids:?}");
    }
    let rt = gw.get("/ResourceTypes").await;
    rt.expect(200, "GET /ResourceTypes");
    let names: Vec<String> = rt.resources().iter().map(|x| x["name"].as_str().unwrap_or_default().to_owned()).collect();
    assert!(names.contains(&"User".to_owned()) && names.contains(&"Group".to_owned()), "{:#}", rt.body);
    assert_eq!(gw.app_account_count().await, 0);
}
