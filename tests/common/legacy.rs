//! Real legacy apps for tests: started with the project's scripts in `tests/backends/` (or taken
//! from the environment when CI already started them), stopped on drop when the test started them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// A running legacy app and the `KEY=value` facts its start script printed.
pub struct Legacy {
    script: PathBuf,
    port: String,
    data: String,
    started_here: bool,
    pub vars: HashMap<String, String>,
}

impl Legacy {
    /// Starts (or reuses) the app `name` (`redmine`, `mailman`). When `<PREFIX>_BASE_URL` is set in
    /// the environment, the running instance it names is used as is.
    pub fn start(name: &str, prefix: &str, port: u16) -> Self {
        let script = super::repo_root().join(format!("tests/backends/start-{name}.sh"));
        let data = std::env::temp_dir().join(format!("scimbridge-it-{name}-{port}")).display().to_string();
        let from_env: HashMap<String, String> =
            std::env::vars().filter(|(k, _)| k.starts_with(&format!("{prefix}_"))).collect();
        if from_env.contains_key(&format!("{prefix}_BASE_URL")) {
            return Self { script, port: port.to_string(), data, started_here: false, vars: from_env };
        }
        let out =
            Command::new("bash").arg(&script).arg(port.to_string()).arg(&data).output().expect("run start script");
        assert!(out.status.success(), "{name} did not start: {}", String::from_utf8_lossy(&out.stderr));
        let vars = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Self { script, port: port.to_string(), data, started_here: true, vars }
    }

    /// A fact the start script printed (`REDMINE_API_KEY`).
    pub fn var(&self, key: &str) -> &str {
        self.vars.get(key).map(String::as_str).unwrap_or_else(|| panic!("{key} not printed by the start script"))
    }
}

impl Drop for Legacy {
    fn drop(&mut self) {
        if self.started_here {
            let _ = Command::new("bash").arg(&self.script).args(["--stop", &self.port, &self.data]).output();
        }
    }
}

/// A config directory with the app's mapping (`mappings/<name>.yaml`) and its example tenant
/// (`tenants/examples/<name>.yaml`) as the one tenant.
pub fn config_dir(name: &str) -> PathBuf {
    let dir = super::temp_dir(&format!("{name}-config"));
    std::fs::create_dir_all(dir.join("tenants")).expect("tenants dir");
    std::fs::create_dir_all(dir.join("mappings")).expect("mappings dir");
    let root = super::repo_root();
    std::fs::copy(root.join(format!("mappings/{name}.yaml")), dir.join(format!("mappings/{name}.yaml")))
        .expect("mapping");
    std::fs::copy(root.join(format!("tenants/examples/{name}.yaml")), dir.join(format!("tenants/{name}.yaml")))
        .expect("tenant");
    dir
}

/// A JSON call to an app's own API with fixed headers.
pub async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> (u16, Value) {
    let mut req = http.request(method, url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let r = req.send().await.expect("app reachable");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}
