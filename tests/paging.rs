//! Paging styles end to end: the demo app's cursor feed (`next` in the body, `Link` header) read
//! through mapping variants that page by cursor and by Link header, in pages of two.

mod common;

use common::*;
use reqwest::Method;

/// A config whose User list pages through the demo app's feed in the given style.
fn config(paging: &str) -> std::path::PathBuf {
    let dir = temp_dir("paging-config");
    std::fs::create_dir_all(dir.join("tenants")).unwrap();
    std::fs::create_dir_all(dir.join("mappings")).unwrap();
    std::fs::copy(repo_root().join("tenants/demo.yaml"), dir.join("tenants/demo.yaml")).unwrap();
    let mapping = std::fs::read_to_string(repo_root().join("mappings/demo-app.yaml")).unwrap();
    let user_list = r#"          path: /api/v1/accounts
          query: { offset: "{{ offset }}", limit: "{{ limit }}" }
        items: /accounts
        total: /paging/total
        paging: { max_page_size: 200 }"#;
    assert!(mapping.contains(user_list), "the demo mapping's User list changed: update this test");
    let feed = format!(
        "          path: /api/v1/accounts/feed\n          query: {{ after: \"{{{{ cursor }}}}\", limit: \"{{{{ limit }}}}\" }}\n        items: /accounts\n        paging: {paging}"
    );
    std::fs::write(dir.join("mappings/demo-app.yaml"), mapping.replacen(user_list, &feed, 1)).unwrap();
    dir
}

async fn check_paging(paging: &str) {
    let gw = Gateway::serve(&config(paging), &temp_dir("paging-data"), DemoApp::start());
    let mut names = Vec::new();
    for i in 0..5 {
        let name = format!("p{i}@example.com");
        assert_eq!(gw.entra_create_user(&name).await.status, 201);
        names.push(name);
    }
    let all = gw.scim(Method::GET, "/Users?startIndex=1&count=10", None).await;
    assert_eq!(all.body["totalResults"], 5, "{paging}: {:?}", all.body);
    let got: Vec<&str> =
        all.body["Resources"].as_array().unwrap().iter().filter_map(|r| r["userName"].as_str()).collect();
    assert_eq!(got, names.iter().map(String::as_str).collect::<Vec<_>>(), "{paging}: every page, in order");
    let window = gw.scim(Method::GET, "/Users?startIndex=4&count=2", None).await;
    let got: Vec<&str> =
        window.body["Resources"].as_array().unwrap().iter().filter_map(|r| r["userName"].as_str()).collect();
    assert_eq!(got, vec!["p3@example.com", "p4@example.com"], "{paging}: a window across pages");
    assert_eq!(
        (window.body["totalResults"].clone(), window.body["startIndex"].clone()),
        (serde_json::json!(5), serde_json::json!(4))
    );
    let filtered =
        gw.scim(Method::GET, &format!("/Users?filter={}", urlencode("title pr or userName sw \"p2\"")), None).await;
    assert_eq!(filtered.body["totalResults"], 1, "{paging}: a scan reads every page: {:?}", filtered.body);
}

#[tokio::test]
async fn cursor_paging_follows_the_next_token() {
    check_paging("{ style: cursor, next: /next, max_page_size: 2 }").await;
}

#[tokio::test]
async fn link_paging_follows_the_link_header() {
    check_paging("{ style: link, max_page_size: 2 }").await;
}
