//! The shortest end-to-end path: the real binary, the demo app, one create and read-back.

mod common;

use common::*;
use reqwest::Method;

#[tokio::test]
async fn create_read_and_auth() {
    let gw = Gateway::demo();
    let created = gw.entra_create_user("smoke@example.com").await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.headers["content-type"], "application/scim+json");
    let id = created.id();
    let read = gw.scim(Method::GET, &format!("/Users/{id}"), None).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body["userName"], "smoke@example.com");
    let account = gw.app_account("smoke@example.com").await;
    assert_eq!(account["first_name"], "Given");
    assert_eq!(account["ext_ref"], "ext-smoke@example.com");
    let denied = gw.scim_as("wrong", Method::GET, "/Users", None, &[]).await;
    assert_eq!(denied.status, 401);
    assert_eq!(denied.body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error");
}
