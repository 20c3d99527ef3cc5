//! Entra ID's provisioning lifecycle against a real Redmine, through `mappings/redmine.yaml` alone:
//! every step asserted on the SCIM answer and read back through Redmine's own REST API.
//! Redmine is started with `tests/backends/start-redmine.sh` (or taken from `REDMINE_BASE_URL`).

mod common;

use common::legacy::{Legacy, call};
use common::*;
use reqwest::Method;
use serde_json::{Value, json};

struct Redmine {
    url: String,
    key: String,
    http: reqwest::Client,
}

impl Redmine {
    async fn get(&self, path: &str) -> (u16, Value) {
        call(&self.http, Method::GET, &format!("{}{path}", self.url), &[("X-Redmine-API-Key", &self.key)], None).await
    }

    /// The Redmine user with this login (locked ones included).
    async fn user(&self, login: &str) -> Value {
        let (s, v) = self.get(&format!("/users.json?status=&name={}", urlencode(login))).await;
        assert_eq!(s, 200, "{v}");
        let id = v["users"].as_array().and_then(|u| u.iter().find(|u| u["login"] == login)).map(|u| u["id"].clone());
        let id = id.unwrap_or_else(|| panic!("no Redmine user `{login}`: {v}"));
        let (s, u) = self.get(&format!("/users/{id}.json")).await;
        assert_eq!(s, 200, "{u}");
        u["user"].clone()
    }

    async fn group_members(&self, id: &Value) -> Vec<Value> {
        let (s, g) = self.get(&format!("/groups/{id}.json?include=users")).await;
        assert_eq!(s, 200, "{g}");
        let mut ids: Vec<Value> =
            g["group"]["users"].as_array().cloned().unwrap_or_default().iter().map(|u| u["id"].clone()).collect();
        ids.sort_by_key(|v| v.as_u64());
        ids
    }
}

fn custom_field(user: &Value, id: u64) -> Value {
    user["custom_fields"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["id"] == id))
        .map(|f| f["value"].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn entra_lifecycle_against_a_real_redmine() {
    let app = Legacy::start("redmine", "REDMINE", 13007);
    let rm = Redmine {
        url: app.var("REDMINE_BASE_URL").to_owned(),
        key: app.var("REDMINE_API_KEY").to_owned(),
        http: reqwest::Client::new(),
    };
    let gw = Gateway::serve_env(
        &common::legacy::config_dir("redmine"),
        &temp_dir("redmine-data"),
        &[("REDMINE_URL", &rm.url), ("REDMINE_API_KEY", &rm.key)],
    );
    let base = gw.tenant_base("redmine");
    let scim = |m: Method, path: &str, body: Option<Value>| {
        let url = format!("{base}{path}");
        let gw = &gw;
        async move { gw.scim_as(TOKEN, m, &url, body, &[]).await }
    };
    let tag = uuid()[..8].to_owned();
    let login = |n: &str| format!("{n}-{tag}@contoso.com");

    // Create two users the way Entra does.
    let mut ids = Vec::new();
    for n in ["ada", "bob"] {
        let body = json!({
            "schemas": [USER, ENTERPRISE], "externalId": format!("ext-{n}-{tag}"), "userName": login(n), "active": true,
            "emails": [{"primary": true, "type": "work", "value": login(n)}],
            "name": {"formatted": "x", "familyName": "Lovelace-Byron-Of-A-Very-Long-Family", "givenName": n}, "roles": []
        });
        let r = scim(Method::POST, "/Users", Some(body)).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        ids.push(r.id());
        let u = rm.user(&login(n)).await;
        assert_eq!(
            (u["mail"].as_str(), u["firstname"].as_str(), u["status"].as_u64()),
            (Some(login(n).as_str()), Some(n), Some(1))
        );
        assert_eq!(custom_field(&u, 1), json!(format!("ext-{n}-{tag}")));
        assert_eq!(u["lastname"].as_str().map(str::len), Some(30), "Redmine's own field holds the first 30 characters");
        assert_eq!(r.body["name"]["familyName"], "Lovelace-Byron-Of-A-Very-Long-Family", "SCIM keeps the whole name");
    }
    let (ada, bob) = (ids[0].clone(), ids[1].clone());
    let ada_rm = rm.user(&login("ada")).await["id"].clone();
    let bob_rm = rm.user(&login("bob")).await["id"].clone();

    // Entra's matching query finds the user.
    let found =
        scim(Method::GET, &format!("/Users?filter={}", urlencode(&format!("userName eq \"{}\"", login("ada")))), None)
            .await;
    assert_eq!(found.body["Resources"][0]["id"], ada.as_str(), "{:?}", found.body);

    // A group, then both members with Entra's Add shape.
    let g =
        scim(Method::POST, "/Groups", Some(json!({"schemas": [GROUP], "displayName": format!("Engineering {tag}")})))
            .await;
    assert_eq!(g.status, 201, "{:?}", g.body);
    let gid = g.id();
    let (_, groups) = rm.get("/groups.json").await;
    let g_rm = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == format!("Engineering {tag}"))
        .expect("group in Redmine")["id"]
        .clone();
    let add = patch(
        json!([{"op": "Add", "path": "members", "value": [{"$ref": null, "value": ada}, {"$ref": null, "value": bob}]}]),
    );
    assert_eq!(scim(Method::PATCH, &format!("/Groups/{gid}"), Some(add.clone())).await.status, 204);
    assert_eq!(rm.group_members(&g_rm).await, vec![ada_rm.clone(), bob_rm.clone()]);
    // Adding again is idempotent although Redmine answers 422 for an existing member.
    assert_eq!(scim(Method::PATCH, &format!("/Groups/{gid}"), Some(add)).await.status, 204);

    // Rename the group and the user's family name.
    let rename = patch(json!([{"op": "Replace", "path": "displayName", "value": format!("Platform {tag}")}]));
    assert_eq!(scim(Method::PATCH, &format!("/Groups/{gid}"), Some(rename)).await.status, 204);
    let (_, gv) = rm.get(&format!("/groups/{g_rm}.json")).await;
    assert_eq!(gv["group"]["name"], format!("Platform {tag}"));
    let r = scim(
        Method::PATCH,
        &format!("/Users/{ada}"),
        Some(patch(json!([{"op": "Replace", "path": "name.familyName", "value": "King"}]))),
    )
    .await;
    assert_eq!((r.status.as_u16(), r.body["name"]["familyName"].clone()), (200, json!("King")), "{:?}", r.body);
    assert_eq!(rm.user(&login("ada")).await["lastname"], "King");

    // Change the work email through Entra's value path.
    let new_mail = format!("ada.king-{tag}@contoso.com");
    let r = scim(
        Method::PATCH,
        &format!("/Users/{ada}"),
        Some(patch(json!([{"op": "Replace", "path": "emails[type eq \"work\"].value", "value": new_mail}]))),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(rm.user(&login("ada")).await["mail"], new_mail.as_str());

    // Disable with Entra's string boolean: locked in Redmine, still readable and findable in SCIM.
    let off = patch(json!([{"op": "Replace", "path": "active", "value": "False"}]));
    assert_eq!(scim(Method::PATCH, &format!("/Users/{ada}"), Some(off)).await.body["active"], false);
    assert_eq!(rm.user(&login("ada")).await["status"], 3);
    assert_eq!(scim(Method::GET, &format!("/Users/{ada}"), None).await.body["active"], false);
    let still =
        scim(Method::GET, &format!("/Users?filter={}", urlencode(&format!("userName eq \"{}\"", login("ada")))), None)
            .await;
    assert_eq!(still.body["totalResults"], 1, "a locked user is still found: {:?}", still.body);
    let on = patch(json!([{"op": "Replace", "path": "active", "value": "True"}]));
    assert_eq!(scim(Method::PATCH, &format!("/Users/{ada}"), Some(on)).await.body["active"], true);
    assert_eq!(rm.user(&login("ada")).await["status"], 1);

    // Remove one member with Entra's default shape: only that member goes.
    let rm_ada = patch(json!([{"op": "Remove", "path": "members", "value": [{"value": ada}]}]));
    assert_eq!(scim(Method::PATCH, &format!("/Groups/{gid}"), Some(rm_ada)).await.status, 204);
    assert_eq!(rm.group_members(&g_rm).await, vec![bob_rm.clone()]);

    // Delete: gone in SCIM and in Redmine.
    assert_eq!(scim(Method::DELETE, &format!("/Users/{ada}"), None).await.status, 204);
    assert_eq!(scim(Method::GET, &format!("/Users/{ada}"), None).await.status, 404);
    assert_eq!(rm.get(&format!("/users/{ada_rm}.json")).await.0, 404);
    assert_eq!(scim(Method::DELETE, &format!("/Groups/{gid}"), None).await.status, 204);
    assert_eq!(rm.get(&format!("/groups/{g_rm}.json")).await.0, 404);
    assert_eq!(scim(Method::DELETE, &format!("/Users/{bob}"), None).await.status, 204);
}
