//! The deployment files in `deploy/` parse and agree with each other and with the gateway: ports
//! and probe paths, drain time, the user the image runs as, ConfigMaps that are copies of the
//! repository's demo configuration, secrets for every `${VAR}` a tenant needs, and an nginx that
//! never re-sends a sent write. The compose shape itself runs in tests/load_balancer.rs.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::repo_root;
use serde_json::Value;

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml_docs(rel: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

/// Names of the `${VAR}`s without a default in `text`: what a tenant needs from the environment.
fn required_vars(text: &str) -> BTreeSet<String> {
    text.split("${")
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(inner, _)| inner))
        .filter(|inner| !inner.contains(":-"))
        .map(str::to_owned)
        .collect()
}

/// Keys set (or shown commented out) in an env example file.
fn env_keys(rel: &str) -> BTreeSet<String> {
    read(rel)
        .lines()
        .map(|l| l.trim_start_matches('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim().to_owned()))
        .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .collect()
}

/// The uid the image runs as (`USER uid:gid` in deploy/Dockerfile).
fn image_uid() -> u64 {
    let dockerfile = read("deploy/Dockerfile");
    let user = dockerfile.lines().find_map(|l| l.strip_prefix("USER ")).expect("USER in deploy/Dockerfile");
    user.split(':').next().unwrap().trim().parse().expect("numeric USER")
}

#[test]
fn the_dockerfile_builds_the_locked_release_and_runs_unprivileged() {
    let dockerfile = read("deploy/Dockerfile");
    assert!(dockerfile.contains("FROM rust:1-bookworm AS build"), "builder stage");
    assert!(dockerfile.contains("cargo build --release --locked"), "a locked release build");
    assert!(dockerfile.contains("FROM debian:bookworm-slim"), "slim runtime");
    assert!(dockerfile.contains(&format!("--uid {}", image_uid())), "USER is the created user");
    assert_ne!(image_uid(), 0);
    let ignore = read(".dockerignore");
    assert!(ignore.lines().any(|l| l.trim() == "target/"), ".dockerignore keeps target/ out of the context");
}

#[test]
fn the_compose_file_has_redis_two_replicas_and_nginx_that_agree() {
    let compose = yaml_docs("deploy/compose/compose.yaml").remove(0);
    let services = &compose["services"];
    let redis = &services["redis"];
    let redis_cmd = strs(&redis["command"]).join(" ");
    for needed in ["--appendonly yes", "--maxmemory-policy noeviction", "--requirepass"] {
        assert!(redis_cmd.contains(needed), "redis command has `{needed}`: {redis_cmd}");
    }
    assert!(strs(&redis["volumes"]).iter().any(|v| v.ends_with(":/data")), "redis data on a volume");
    assert!(redis["healthcheck"]["test"].is_array(), "redis health check");

    let nginx_conf = read("deploy/compose/nginx.conf");
    for name in ["scimbridge-1", "scimbridge-2"] {
        let r = &services[name];
        assert_eq!(r["build"]["dockerfile"], "deploy/Dockerfile", "{name}");
        let context = Path::new("deploy/compose").join(r["build"]["context"].as_str().expect("context"));
        assert!(repo_root().join(context).join("Cargo.lock").exists(), "{name}: the context is the repository");
        let cmd = strs(&r["command"]);
        assert_eq!(cmd, ["serve", "--config", "/etc/scimbridge", "--listen", "0.0.0.0:8080"], "{name}");
        assert!(r["environment"]["SCIMBRIDGE_STORE"].as_str().unwrap().starts_with("redis://"), "{name}: Redis");
        let volumes = strs(&r["volumes"]);
        for sub in ["tenants", "mappings"] {
            assert!(
                volumes.iter().any(|v| v.ends_with(&format!("/{sub}:/etc/scimbridge/{sub}:ro"))),
                "{name}: {sub} mounted read-only: {volumes:?}"
            );
        }
        assert!(strs(&r["healthcheck"]["test"]).iter().any(|a| a.ends_with("/readyz")), "{name}: readiness");
        assert_eq!(r["depends_on"]["redis"]["condition"], "service_healthy", "{name}");
        let grace: u64 = r["stop_grace_period"].as_str().unwrap().trim_end_matches('s').parse().unwrap();
        assert!(grace > 30, "{name}: stop grace above the 30 s drain");
        // nginx balances exactly these replicas, on the port they listen on.
        assert_eq!(nginx_conf.matches(&format!("server {name}:8080 ")).count(), 1, "{name} in nginx.conf");
        assert_eq!(services["nginx"]["depends_on"][name]["condition"], "service_healthy");
    }
    assert_eq!(nginx_conf.matches("\n    server ").count(), 2, "two upstream servers");
    assert!(
        strs(&services["nginx"]["volumes"]).contains(&"./nginx.conf:/etc/nginx/conf.d/default.conf:ro"),
        "nginx runs the shipped nginx.conf"
    );
    // Retries: on connection errors and timeouts only, and never a sent POST or PATCH.
    let next: Vec<&str> = nginx_conf.lines().map(str::trim).filter(|l| l.starts_with("proxy_next_upstream ")).collect();
    assert_eq!(next, ["proxy_next_upstream error timeout;"]);
    assert!(!nginx_conf.contains("non_idempotent;"), "nginx.conf must not re-send non-idempotent requests");

    // Every ${VAR} the repository's tenants need has a line in the replicas' env file example.
    let keys = env_keys("deploy/compose/scimbridge.env.example");
    for entry in std::fs::read_dir(repo_root().join("tenants")).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            for var in required_vars(&text) {
                assert!(keys.contains(&var), "scimbridge.env.example lacks {var} ({})", entry.path().display());
            }
        }
    }
    for var in ["REDIS_PASSWORD", "SCIMBRIDGE_PUBLIC_URL"] {
        assert!(env_keys("deploy/compose/.env.example").contains(var), ".env.example lacks {var}");
    }
}

#[test]
fn the_kubernetes_manifests_are_complete_and_agree() {
    let dir = "deploy/kubernetes";
    let kustomization = yaml_docs(&format!("{dir}/kustomization.yaml")).remove(0);
    let namespace = kustomization["namespace"].as_str().expect("namespace");
    let listed: BTreeSet<&str> = strs(&kustomization["resources"]).into_iter().collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(repo_root().join(dir))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(listed, on_disk.iter().map(String::as_str).collect(), "kustomization.yaml lists every manifest");

    let mut objects = Vec::new();
    for file in &on_disk {
        for doc in yaml_docs(&format!("{dir}/{file}")) {
            for field in ["apiVersion", "kind"] {
                assert!(doc[field].is_string(), "{file}: {field}");
            }
            assert!(doc["metadata"]["name"].is_string(), "{file}: metadata.name");
            if doc["kind"] != "Namespace" {
                assert_eq!(doc["metadata"]["namespace"], namespace, "{file}: namespace");
            }
            objects.push(doc);
        }
    }
    let find = |kind: &str, name: &str| -> &Value {
        objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{kind}/{name} in {dir}"))
    };
    let secret = kustomization["secretGenerator"][0]["name"].as_str().expect("secretGenerator");

    let deployment = find("Deployment", "scimbridge");
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], 2);
    let pod = &spec["template"];
    let labels = pod["metadata"]["labels"].as_object().unwrap();
    assert_eq!(spec["selector"]["matchLabels"].as_object().unwrap(), labels, "selector = pod labels");
    let c = &pod["spec"]["containers"][0];
    assert_eq!(strs(&c["args"]), ["serve", "--config", "/etc/scimbridge", "--listen", "0.0.0.0:8080"]);
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    assert_eq!(c["ports"][0]["name"], "http");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
        assert_eq!(c[probe]["httpGet"]["port"], "http", "{probe} port");
    }
    assert_eq!(c["envFrom"][0]["secretRef"]["name"], secret, "the Secret the generator makes");
    let pre_stop: u64 = strs(&c["lifecycle"]["preStop"]["exec"]["command"])[1].parse().unwrap();
    let grace = pod["spec"]["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(grace > pre_stop + 30, "grace period above preStop + the 30 s drain");
    assert_eq!(pod["spec"]["securityContext"]["runAsUser"], image_uid(), "the image's user");
    for v in pod["spec"]["volumes"].as_array().unwrap() {
        find("ConfigMap", v["configMap"]["name"].as_str().expect("configMap volume"));
    }

    let service = find("Service", "scimbridge");
    for (k, v) in service["spec"]["selector"].as_object().unwrap() {
        assert_eq!(labels.get(k), Some(v), "Service selects the pods");
    }
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
    let pdb = find("PodDisruptionBudget", "scimbridge");
    assert_eq!(pdb["spec"]["selector"], spec["selector"]);
    assert!(pdb["spec"]["minAvailable"].as_u64().unwrap() < 2);
    let ingress = find("Ingress", "scimbridge");
    let backend = &ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"];
    assert_eq!(backend["name"], "scimbridge");
    assert_eq!(backend["port"]["name"], service["spec"]["ports"][0]["name"]);
    let annotations = &ingress["metadata"]["annotations"];
    assert_eq!(annotations["nginx.ingress.kubernetes.io/proxy-next-upstream"], "error timeout");

    let redis = find("StatefulSet", "redis");
    let rc = &redis["spec"]["template"]["spec"]["containers"][0];
    let args = strs(&rc["args"]).join(" ");
    assert!(args.contains("--appendonly yes") && args.contains("--requirepass $(REDIS_PASSWORD)"), "{args}");
    assert_eq!(rc["env"][0]["valueFrom"]["secretKeyRef"]["name"], secret);
    assert!(redis["spec"]["volumeClaimTemplates"].is_array(), "Redis data on a volume");
    find("Service", "redis");

    // The ConfigMaps are the repository's demo configuration, byte for byte.
    for (map, file) in [("scimbridge-tenants", "tenants/demo.yaml"), ("scimbridge-mappings", "mappings/demo-app.yaml")]
    {
        let key = Path::new(file).file_name().unwrap().to_str().unwrap();
        assert_eq!(find("ConfigMap", map)["data"][key], read(file), "{map} is a copy of {file}");
    }
    // The Secret's example has the store and every ${VAR} the ConfigMap's tenants need.
    let keys = env_keys(&format!("{dir}/secrets.env.example"));
    let tenants = find("ConfigMap", "scimbridge-tenants")["data"].as_object().unwrap();
    let needed = tenants.values().flat_map(|t| required_vars(t.as_str().unwrap()));
    for var in needed.chain(["SCIMBRIDGE_STORE".into(), "REDIS_PASSWORD".into()]) {
        assert!(keys.contains(&var), "secrets.env.example lacks {var}");
    }
}

/// The metrics docs/operations.md documents, in their Prometheus names: counters end in `_total`,
/// histograms in seconds take `_seconds` (and come as `_bucket`, `_sum`, `_count`).
fn documented_metrics() -> BTreeSet<String> {
    let ops = read("docs/operations.md");
    ops.lines()
        .filter_map(|l| l.strip_prefix("| `scimbridge."))
        .filter_map(|rest| {
            let (name, rest) = rest.split_once('`')?;
            let kind = rest.trim_start_matches(" |").trim();
            let base = format!("scimbridge_{}", name.replace('.', "_"));
            if kind.starts_with("counter") {
                Some(format!("{base}_total"))
            } else if kind.starts_with("histogram, `s`") {
                Some(format!("{base}_seconds"))
            } else {
                None
            }
        })
        .collect()
}

#[test]
fn the_grafana_dashboard_charts_every_documented_metric_and_no_other() {
    let dashboard: Value = serde_json::from_str(&read("deploy/observability/grafana-dashboard.json")).expect("JSON");
    let documented = documented_metrics();
    assert!(documented.len() >= 9, "the metrics table was found: {documented:?}");
    let mut charted = BTreeSet::new();
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    for panel in panels {
        assert!(ids.insert(panel["id"].as_u64().expect("panel id")), "panel ids are unique");
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("expr");
            for part in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if let Some(name) = part.strip_prefix("scimbridge_") {
                    let name = format!("scimbridge_{name}");
                    let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(&name);
                    assert!(
                        documented.contains(base),
                        "panel `{}` uses `{name}`, not a documented metric",
                        panel["title"]
                    );
                    charted.insert(base.to_owned());
                }
            }
        }
    }
    let missing: Vec<_> = documented.difference(&charted).collect();
    assert!(missing.is_empty(), "documented metrics without a panel: {missing:?}");
    let tenant_var = &dashboard["templating"]["list"][1];
    assert_eq!(tenant_var["name"], "tenant");
}

#[test]
fn the_collector_config_receives_otlp_on_the_standard_ports_and_wires_every_pipeline() {
    let docs = yaml_docs("deploy/observability/otel-collector.yaml");
    let c = &docs[0];
    let protocols = &c["receivers"]["otlp"]["protocols"];
    assert_eq!(protocols["grpc"]["endpoint"], "0.0.0.0:4317");
    assert_eq!(protocols["http"]["endpoint"], "0.0.0.0:4318");
    let pipelines = c["service"]["pipelines"].as_object().expect("pipelines");
    for signal in ["traces", "metrics", "logs"] {
        let p = &pipelines[signal];
        for (part, section) in [("receivers", "receivers"), ("processors", "processors"), ("exporters", "exporters")] {
            for name in strs(&p[part]) {
                assert!(c[section].get(name).is_some(), "{signal}: {part} `{name}` is defined");
            }
        }
        assert_eq!(strs(&p["processors"]).first(), Some(&"memory_limiter"), "{signal}: memory_limiter comes first");
    }
    assert!(strs(&pipelines["metrics"]["exporters"]).contains(&"prometheus"), "the dashboard's metrics are scraped");
}
