//! Configuration reload while serving: on SIGHUP, and when a file under `tenants/` or `mappings/`
//! changes (polled: a handful of `stat` calls, no platform watcher to go wrong). The new
//! configuration is validated as a whole and swapped in atomically; an invalid one is reported and
//! the running one kept. Requests in flight finish on the tenant they started with (they hold it).
//!
//! The trigger (SIGHUP or a changed file, [`on_change`]) is shared with the listener's certificate
//! reload (`server::tls`), so both reload on the same signal in the same way.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use crate::config;
use crate::tenant::Registry;

/// What some files looked like: path, size and modification time of each, sorted. A file that
/// cannot be read has no entry, so its disappearance (and return) counts as a change too.
pub type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

fn fingerprint(dir: &Path) -> Fingerprint {
    let mut out = Vec::new();
    for sub in ["tenants", "mappings"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else { continue };
        for e in entries.filter_map(Result::ok) {
            // Symbolic links followed: Kubernetes updates a mounted ConfigMap by swapping the
            // link its files point through, which leaves the links themselves unchanged.
            if let Ok(m) = std::fs::metadata(e.path())
                && m.is_file()
            {
                out.push((e.path(), m.len(), m.modified().ok()));
            }
        }
    }
    out.sort();
    out
}

/// The fingerprint of a fixed list of files (symbolic links followed, as a reader would).
pub fn fingerprint_files<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Fingerprint {
    let mut out: Fingerprint = paths
        .into_iter()
        .filter_map(|p| std::fs::metadata(p).ok().map(|m| (p.to_path_buf(), m.len(), m.modified().ok())))
        .collect();
    out.sort();
    out
}

/// Reads, validates and swaps in the configuration of `dir`; `Err` carries the problems.
pub fn reload(dir: &Path, registry: &ArcSwap<Registry>) -> Result<usize, config::Problems> {
    // Built on the running registry, so the apps' outbound limiters carry over.
    let next = config::read_dir(dir).and_then(|set| Registry::rebuild(&set, &registry.load()))?;
    let n = next.len();
    registry.store(Arc::new(next));
    Ok(n)
}

fn reload_logged(dir: &Path, registry: &ArcSwap<Registry>, why: &str) {
    let result = reload(dir, registry);
    crate::telemetry::metrics::get().config_reload(result.is_ok());
    match result {
        Ok(n) => tracing::info!(reason = why, tenants = n, "configuration reloaded"),
        Err(problems) => {
            for p in &problems.0 {
                tracing::error!(reason = why, problem = %p, "configuration change rejected; the running configuration stays");
            }
        }
    }
}

/// Reloads on SIGHUP and on file changes (checked every `every`) until the process ends.
///
/// Like [`on_change`], it listens for SIGHUP from the moment it is called, not from the moment
/// the returned future first runs.
pub fn watch(dir: PathBuf, registry: Arc<ArcSwap<Registry>>, every: Duration) -> impl Future<Output = ()> + Send {
    let seen = dir.clone();
    on_change(move || fingerprint(&seen), every, move |why| reload_logged(&dir, &registry, why))
}

/// Calls `apply` with the reason on SIGHUP, and when `fingerprint` changes (checked every
/// `every`), until the process ends.
///
/// SIGHUP is taken over when this is called (in a runtime), before the future runs: a SIGHUP sent
/// once the process says it listens must reload, and by default the signal would end the process.
pub fn on_change(
    mut fingerprint: impl FnMut() -> Fingerprint + Send,
    every: Duration,
    mut apply: impl FnMut(&str) + Send,
) -> impl Future<Output = ()> + Send {
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    async move {
        let mut seen = fingerprint();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            #[cfg(unix)]
            let signal = async {
                match hup.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let signal = std::future::pending::<Option<()>>();
            tokio::select! {
                _ = signal => {
                    seen = fingerprint();
                    apply("SIGHUP");
                }
                _ = tick.tick() => {
                    let now = fingerprint();
                    if now != seen {
                        // Let an editor finish writing before reading.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        seen = fingerprint();
                        apply("files changed");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_configmap_style_update_through_swapped_links_is_a_change() {
        use std::os::unix::fs::symlink;
        // Kubernetes' layout: tenants/a.yaml → ..data/a.yaml, ..data → ..v1 (then ..v2).
        let dir = std::env::temp_dir().join(format!("scimbridge-reload-{}", uuid::Uuid::new_v4()));
        let t = dir.join("tenants");
        for v in ["..v1", "..v2"] {
            std::fs::create_dir_all(t.join(v)).unwrap();
        }
        std::fs::write(t.join("..v1/a.yaml"), "id: a\n").unwrap();
        std::fs::write(t.join("..v2/a.yaml"), "id: a\n# changed, longer\n").unwrap();
        symlink("..v1", t.join("..data")).unwrap();
        symlink("..data/a.yaml", t.join("a.yaml")).unwrap();
        let before = fingerprint(&dir);
        assert_eq!(before.len(), 1, "the linked file is seen: {before:?}");
        // The atomic swap: a new link renamed over `..data`.
        symlink("..v2", t.join("..data_tmp")).unwrap();
        std::fs::rename(t.join("..data_tmp"), t.join("..data")).unwrap();
        assert_ne!(fingerprint(&dir), before);
        let _ = std::fs::remove_dir_all(dir);
    }
}
