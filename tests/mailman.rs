//! Entra ID's provisioning lifecycle against a real GNU Mailman 3, through `mappings/mailman.yaml`
//! alone: every step asserted on the SCIM answer and read back through Mailman's own REST API.
//! Mailman is started with `tests/backends/start-mailman.sh` (or taken from `MAILMAN_BASE_URL`).

mod common;

use common::legacy::Legacy;
use common::*;
use reqwest::Method;
use serde_json::{Value, json};

struct Mailman {
    url: String,
    user: String,
    password: String,
    http: reqwest::Client,
}

impl Mailman {
    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(format!("{}{path}", self.url)).basic_auth(&self.user, Some(&self.password)).send().await;
        let r = r.expect("mailman reachable");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn user_by_email(&self, email: &str) -> Value {
        let (s, v) = self.get(&format!("/users/{}", urlencode(email))).await;
        assert_eq!(s, 200, "no Mailman user for {email}: {v}");
        v
    }

    async fn list_by_name(&self, name: &str) -> Value {
        let (_, v) = self.get("/lists?count=100&page=1").await;
        v["entries"]
            .as_array()
            .and_then(|l| l.iter().find(|x| x["display_name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no list `{name}`: {v}"))
    }

    /// User ids subscribed to a list, sorted.
    async fn roster(&self, list_id: &str) -> Vec<String> {
        let (_, v) = self.get(&format!("/lists/{list_id}/roster/member?count=100&page=1")).await;
        let mut ids: Vec<String> = v["entries"]
            .as_array()
            .map(|e| {
                e.iter()
                    .filter_map(|m| m["user"].as_str())
                    .map(|u| u.rsplit('/').next().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }
}

#[tokio::test]
async fn entra_lifecycle_against_a_real_mailman() {
    let app = Legacy::start("mailman", "MAILMAN", 18007);
    let mm = Mailman {
        url: app.var("MAILMAN_BASE_URL").to_owned(),
        user: app.var("MAILMAN_USER").to_owned(),
        password: app.var("MAILMAN_PASSWORD").to_owned(),
        http: reqwest::Client::new(),
    };
    let gw = Gateway::serve_env(
        &common::legacy::config_dir("mailman"),
        &temp_dir("mailman-data"),
        &[
            ("MAILMAN_BASE_URL", &mm.url),
            ("MAILMAN_USER", &mm.user),
            ("MAILMAN_PASSWORD", &mm.password),
            ("MAILMAN_DOMAIN", app.var("MAILMAN_DOMAIN")),
        ],
    );
    let base = gw.tenant_base("mailman");
    let scim = |m: Method, path: &str, body: Option<Value>| {
        let url = format!("{base}{path}");
        let gw = &gw;
        async move { gw.scim_as(TOKEN, m, &url, body, &[]).await }
    };
    let tag = uuid()[..8].to_owned();
    let mail = |n: &str| format!("{n}-{tag}@example.com");

    // Create two users the way Entra does: the user, its verified preferred address, delivery on.
    let mut ids = Vec::new();
    for n in ["ada", "bob"] {
        let body = json!({
            "schemas": [USER, ENTERPRISE], "externalId": format!("ext-{n}"), "userName": format!("{n}-{tag}@contoso.com"),
            "active": true, "displayName": n, "emails": [{"primary": true, "type": "work", "value": mail(n)}],
            "name": {"formatted": n, "givenName": n, "familyName": "x"}, "roles": []
        });
        let r = scim(Method::POST, "/Users", Some(body)).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        ids.push(r.id());
        let u = mm.user_by_email(&mail(n)).await;
        assert_eq!(u["display_name"], n);
        let uid = u["user_id"].as_str().unwrap().to_owned();
        assert_eq!(mm.get(&format!("/users/{uid}/preferred_address")).await.1["email"], mail(n).as_str());
        assert_eq!(mm.get(&format!("/users/{uid}/preferences")).await.1["delivery_status"], "enabled");
    }
    let (ada, bob) = (ids[0].clone(), ids[1].clone());
    let ada_mm = mm.user_by_email(&mail("ada")).await["user_id"].as_str().unwrap().to_owned();
    let bob_mm = mm.user_by_email(&mail("bob")).await["user_id"].as_str().unwrap().to_owned();

    // Entra's matching query (userName, kept by the gateway) and a duplicate create.
    let q = format!("/Users?filter={}", urlencode(&format!("userName eq \"ada-{tag}@contoso.com\"")));
    assert_eq!(scim(Method::GET, &q, None).await.body["Resources"][0]["id"], ada.as_str());
    let dup = json!({"schemas": [USER], "userName": format!("ada-{tag}@contoso.com"), "active": true, "emails": [{"type": "work", "value": mail("other")}]});
    assert_eq!(scim(Method::POST, "/Users", Some(dup)).await.status, 409);

    // A mailing list, then both members with Entra's Add shape.
    let name = format!("Engineering {tag}");
    let g = scim(Method::POST, "/Groups", Some(json!({"schemas": [GROUP], "displayName": name}))).await;
    assert_eq!(g.status, 201, "{:?}", g.body);
    let gid = g.id();
    let list_id = mm.list_by_name(&name).await["list_id"].as_str().unwrap().to_owned();
    let add = patch(
        json!([{"op": "Add", "path": "members", "value": [{"$ref": null, "value": ada}, {"$ref": null, "value": bob}]}]),
    );
    assert_eq!(scim(Method::PATCH, &format!("/Groups/{gid}"), Some(add.clone())).await.status, 204);
    assert_eq!(mm.roster(&list_id).await, sorted(&[ada_mm.clone(), bob_mm.clone()]));
    assert_eq!(scim(Method::PATCH, &format!("/Groups/{gid}"), Some(add)).await.status, 204, "re-adding is idempotent");

    // Rename the list and the user.
    let rename = patch(json!([{"op": "Replace", "path": "displayName", "value": format!("Platform {tag}")}]));
    assert_eq!(scim(Method::PATCH, &format!("/Groups/{gid}"), Some(rename)).await.status, 204);
    assert_eq!(mm.get(&format!("/lists/{list_id}")).await.1["display_name"], format!("Platform {tag}"));
    let r = scim(
        Method::PATCH,
        &format!("/Users/{ada}"),
        Some(patch(json!([{"op": "Replace", "path": "displayName", "value": "Ada King"}]))),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(mm.get(&format!("/users/{ada_mm}")).await.1["display_name"], "Ada King");

    // Change the work email: a new verified address becomes the preferred one.
    let new_mail = mail("ada.king");
    let r = scim(
        Method::PATCH,
        &format!("/Users/{ada}"),
        Some(patch(json!([{"op": "Replace", "path": "emails[type eq \"work\"].value", "value": new_mail}]))),
    )
    .await;
    assert_eq!((r.status.as_u16(), r.body["emails"][0]["value"].clone()), (200, json!(new_mail)), "{:?}", r.body);
    assert_eq!(mm.get(&format!("/users/{ada_mm}/preferred_address")).await.1["email"], new_mail.as_str());

    // Disable with Entra's string boolean: delivery stops, the user stays readable and findable.
    let off = patch(json!([{"op": "Replace", "path": "active", "value": "False"}]));
    assert_eq!(scim(Method::PATCH, &format!("/Users/{ada}"), Some(off)).await.body["active"], false);
    assert_eq!(mm.get(&format!("/users/{ada_mm}/preferences")).await.1["delivery_status"], "by_user");
    assert_eq!(scim(Method::GET, &format!("/Users/{ada}"), None).await.body["active"], false);
    assert_eq!(scim(Method::GET, &q, None).await.body["totalResults"], 1);
    let on = patch(json!([{"op": "Replace", "path": "active", "value": "True"}]));
    assert_eq!(scim(Method::PATCH, &format!("/Users/{ada}"), Some(on)).await.body["active"], true);
    assert_eq!(mm.get(&format!("/users/{ada_mm}/preferences")).await.1["delivery_status"], "enabled");

    // Remove one member with Entra's default shape: only that subscription goes.
    let rm_ada = patch(json!([{"op": "Remove", "path": "members", "value": [{"value": ada}]}]));
    assert_eq!(scim(Method::PATCH, &format!("/Groups/{gid}"), Some(rm_ada)).await.status, 204);
    assert_eq!(mm.roster(&list_id).await, vec![bob_mm.clone()]);

    // Delete: gone in SCIM and in Mailman.
    assert_eq!(scim(Method::DELETE, &format!("/Users/{ada}"), None).await.status, 204);
    assert_eq!(scim(Method::GET, &format!("/Users/{ada}"), None).await.status, 404);
    assert_eq!(mm.get(&format!("/users/{ada_mm}")).await.0, 404);
    assert_eq!(scim(Method::DELETE, &format!("/Groups/{gid}"), None).await.status, 204);
    assert_eq!(mm.get(&format!("/lists/{list_id}")).await.0, 404);
    assert_eq!(scim(Method::DELETE, &format!("/Users/{bob}"), None).await.status, 204);
}
