//! The behaviour every [`Store`] must have, written once and run against each implementation
//! (`redb` in memory, and Redis on a real server) by their own test modules.

use super::{Record, Store};
use crate::mapping::ResourceKind;

fn rec(id: &str, app: &str, ext: Option<&str>) -> Record {
    Record {
        id: id.into(),
        app_id: app.into(),
        external_id: ext.map(Into::into),
        created: "2026-01-01T00:00:00Z".into(),
        last_modified: "2026-01-01T00:00:00Z".into(),
        version: 1,
        stored: Default::default(),
    }
}

/// Records are found by id, app id and externalId, within their tenant and kind only.
pub async fn put_get_lookup_delete(s: &dyn Store, t: &str) {
    let other = format!("{t}-other");
    assert!(s.put(t, ResourceKind::User, rec("a", "1001", Some("x"))).await.unwrap().is_none());
    assert_eq!(s.get(t, ResourceKind::User, "a").await.unwrap().unwrap().app_id, "1001");
    assert_eq!(s.by_app_id(t, ResourceKind::User, "1001").await.unwrap().unwrap().id, "a");
    assert_eq!(s.by_external_id(t, ResourceKind::User, "x").await.unwrap().unwrap().id, "a");
    // Tenants and kinds are isolated.
    assert!(s.get(&other, ResourceKind::User, "a").await.unwrap().is_none());
    assert!(s.by_app_id(&other, ResourceKind::User, "1001").await.unwrap().is_none());
    assert!(s.by_app_id(t, ResourceKind::Group, "1001").await.unwrap().is_none());
    // Changing externalId moves the index; the version is kept as written.
    let mut changed = rec("a", "1001", Some("y"));
    changed.version = 2;
    s.put(t, ResourceKind::User, changed).await.unwrap();
    assert!(s.by_external_id(t, ResourceKind::User, "x").await.unwrap().is_none());
    assert_eq!(s.by_external_id(t, ResourceKind::User, "y").await.unwrap().unwrap().version, 2);
    s.delete(t, ResourceKind::User, "a").await.unwrap();
    assert!(s.get(t, ResourceKind::User, "a").await.unwrap().is_none());
    assert!(s.by_app_id(t, ResourceKind::User, "1001").await.unwrap().is_none());
    assert!(s.by_external_id(t, ResourceKind::User, "y").await.unwrap().is_none());
    // Deleting what is absent is fine.
    s.delete(t, ResourceKind::User, "a").await.unwrap();
}

/// Stored attributes are indexed case-insensitively (Unicode), and re-indexed on change.
pub async fn stored_attributes_are_indexed_case_insensitively(s: &dyn Store, t: &str) {
    let mut r = rec("a", "1", None);
    r.stored.insert("userName".into(), serde_json::json!("Ädä@X"));
    s.put(t, ResourceKind::User, r.clone()).await.unwrap();
    assert_eq!(s.by_stored(t, ResourceKind::User, "userName", "äDÄ@x").await.unwrap().unwrap().id, "a");
    assert!(s.by_stored(&format!("{t}-other"), ResourceKind::User, "userName", "ädä@x").await.unwrap().is_none());
    r.stored.insert("userName".into(), serde_json::json!("bob@x"));
    s.put(t, ResourceKind::User, r).await.unwrap();
    assert!(s.by_stored(t, ResourceKind::User, "userName", "ädä@x").await.unwrap().is_none(), "old value unindexed");
    s.delete(t, ResourceKind::User, "a").await.unwrap();
    assert!(s.by_stored(t, ResourceKind::User, "userName", "bob@x").await.unwrap().is_none());
}

/// One app object has one record: a second is refused and the holder returned.
pub async fn put_refuses_a_second_record_for_one_app_object(s: &dyn Store, t: &str) {
    s.put(t, ResourceKind::User, rec("a", "7", None)).await.unwrap();
    let holder = s.put(t, ResourceKind::User, rec("b", "7", None)).await.unwrap();
    assert_eq!(holder.unwrap().id, "a");
    assert!(s.get(t, ResourceKind::User, "b").await.unwrap().is_none());
}

/// Adopting names the same app objects with the same SCIM ids, in the order asked.
pub async fn adopt_is_stable(s: &dyn Store, t: &str) {
    let first = s.adopt(t, ResourceKind::User, vec!["1".into(), "2".into()], "now").await.unwrap();
    let again = s.adopt(t, ResourceKind::User, vec!["2".into(), "3".into(), "1".into()], "later").await.unwrap();
    assert_eq!(first[0].id, again[2].id);
    assert_eq!(first[1].id, again[0].id);
    assert_eq!(again[1].created, "later");
    assert_eq!(s.by_app_id(t, ResourceKind::User, "3").await.unwrap().unwrap().id, again[1].id);
    assert!(s.adopt(t, ResourceKind::User, Vec::new(), "now").await.unwrap().is_empty());
}

/// Concurrent adoptions of one app object agree on one SCIM id.
pub async fn concurrent_adoption_agrees(s: &dyn Store, t: &str) {
    let adopt = || s.adopt(t, ResourceKind::Group, vec!["501".into()], "now");
    // Polled together, so they race inside the store.
    let (a, b, c, d) = tokio::join!(adopt(), adopt(), adopt(), adopt());
    let ids: Vec<String> = [a, b, c, d].into_iter().map(|r| r.unwrap()[0].id.clone()).collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
}

/// A tenant's records can be listed whole (export) and removed whole (purge), leaving others.
pub async fn scan_and_purge_a_whole_tenant(s: &dyn Store, t: &str) {
    let neighbour = format!("{t}x"); // shares the prefix: must not be caught
    s.put(t, ResourceKind::User, rec("u1", "1", Some("e1"))).await.unwrap();
    s.put(t, ResourceKind::Group, rec("g1", "501", None)).await.unwrap();
    s.put(&neighbour, ResourceKind::User, rec("n1", "1", None)).await.unwrap();
    let mut all: Vec<(ResourceKind, String)> = s.scan(t).await.unwrap().into_iter().map(|(k, r)| (k, r.id)).collect();
    all.sort();
    assert_eq!(all, [(ResourceKind::User, "u1".to_owned()), (ResourceKind::Group, "g1".to_owned())]);
    assert_eq!(super::purge(s, t).await.unwrap(), 2);
    assert!(s.scan(t).await.unwrap().is_empty());
    assert!(s.by_external_id(t, ResourceKind::User, "e1").await.unwrap().is_none(), "indexes go too");
    assert_eq!(s.scan(&neighbour).await.unwrap().len(), 1);
    super::purge(s, &neighbour).await.unwrap();
}

/// A lock has one holder at a time; another waits for it, or gives up after its wait; an expired
/// lock can be taken; only the holder's unlock releases it and only the holder extends its lease.
pub async fn locks_exclude_and_expire(s: &dyn Store, t: &str) {
    use std::time::Duration;
    let (long, short) = (Duration::from_secs(5), Duration::from_millis(50));
    let held = s.lock(t, "create:User:ada", long, short).await.unwrap().expect("free lock taken");
    assert!(s.lock(t, "create:User:ada", long, short).await.unwrap().is_none(), "held elsewhere");
    assert!(s.lock(t, "create:User:bob", long, short).await.unwrap().is_some(), "another name is free");
    assert!(s.lock(&format!("{t}-other"), "create:User:ada", long, short).await.unwrap().is_some(), "per tenant");
    s.unlock(t, "create:User:ada", super::LockToken::new()).await.unwrap();
    assert!(s.lock(t, "create:User:ada", long, short).await.unwrap().is_none(), "a stranger cannot unlock");
    // A waiter gets the lock as soon as the holder lets go.
    let (waited, ()) = tokio::join!(s.lock(t, "create:User:ada", long, Duration::from_secs(2)), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.unlock(t, "create:User:ada", held).await.unwrap();
    });
    assert!(waited.unwrap().is_some());
    // Expiry frees a lock whose holder died.
    let dead = s.lock(t, "create:User:eve", Duration::from_millis(100), short).await.unwrap().unwrap();
    let alive = s.lock(t, "create:User:eve", long, Duration::from_millis(500)).await.unwrap().expect("expired");
    assert!(!s.extend(t, "create:User:eve", &dead, long).await.unwrap(), "a lost lease cannot be extended");
    assert!(s.extend(t, "create:User:eve", &alive, long).await.unwrap());
    // A renewed lease outlives its first term; nobody else's renewal counts.
    let lease = Duration::from_millis(300);
    let held = s.lock(t, "res:User:1", lease, short).await.unwrap().unwrap();
    assert!(!s.extend(t, "res:User:1", &super::LockToken::new(), lease).await.unwrap(), "a stranger's renewal");
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(s.extend(t, "res:User:1", &held, lease).await.unwrap());
    }
    assert!(s.lock(t, "res:User:1", long, short).await.unwrap().is_none(), "still held after 450 ms of renewals");
}

/// Runs every case against `s`, each under its own tenant `<prefix>-<case>`.
pub async fn run_all(s: &dyn Store, prefix: &str) {
    put_get_lookup_delete(s, &format!("{prefix}-a")).await;
    stored_attributes_are_indexed_case_insensitively(s, &format!("{prefix}-b")).await;
    put_refuses_a_second_record_for_one_app_object(s, &format!("{prefix}-c")).await;
    adopt_is_stable(s, &format!("{prefix}-d")).await;
    concurrent_adoption_agrees(s, &format!("{prefix}-e")).await;
    scan_and_purge_a_whole_tenant(s, &format!("{prefix}-f")).await;
    locks_exclude_and_expire(s, &format!("{prefix}-g")).await;
}
