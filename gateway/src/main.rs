//! The `scimbridge` command: `serve`, `check`, `explain`, `demo`, `demo-app`, `token`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use clap::{Parser, Subcommand};

use scimbridge::config;
use scimbridge::provision::Provisioner;
use scimbridge::server::{self, AppState, Limits};
use scimbridge::store::Store;
use scimbridge::store::redb::RedbStore;
use scimbridge::telemetry::{self, LogFormat};
use scimbridge::tenant::Registry;

#[derive(Parser)]
#[command(name = "scimbridge", version, about = "SCIM 2.0 gateway for legacy REST applications")]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "text", env = "SCIMBRIDGE_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every tenant of a config directory.
    Serve(ServeArgs),
    /// Validate every tenant and mapping file, then exit (non-zero on problems).
    Check {
        /// Directory holding `tenants/` and `mappings/`.
        #[arg(long, default_value = ".")]
        config: PathBuf,
    },
    /// Show the app calls a SCIM request would cause, without sending anything.
    Explain {
        /// Directory holding `tenants/` and `mappings/`.
        #[arg(long, default_value = ".")]
        config: PathBuf,
        /// The tenant id.
        #[arg(long)]
        tenant: String,
        /// HTTP method: GET, POST, PUT, PATCH, DELETE.
        method: String,
        /// Path under the tenant's SCIM base, with any query: `/Users?filter=userName eq "x"`.
        target: String,
        /// A file with the JSON body, or `-` for standard input.
        #[arg(long)]
        body: Option<PathBuf>,
    },
    /// Run the demo: the demo app and the gateway with the demo tenant, together.
    Demo {
        /// Gateway listen address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Demo app listen address.
        #[arg(long, default_value = "127.0.0.1:8081")]
        app_listen: SocketAddr,
        /// Directory holding `tenants/` and `mappings/`.
        #[arg(long, default_value = ".")]
        config: PathBuf,
    },
    /// Run only the demo legacy app.
    DemoApp {
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: SocketAddr,
        /// The API key the app accepts.
        #[arg(long, env = "DEMO_APP_API_KEY", hide_env_values = true)]
        api_key: String,
        /// Test fault injection: delay account-create answers (after committing) by this much.
        #[arg(long, default_value_t = 0, hide = true)]
        create_delay_ms: u64,
    },
    /// Bearer tokens for tenant files.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Directory holding `tenants/` and `mappings/`.
    #[arg(long, default_value = ".")]
    config: PathBuf,
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:8080", env = "SCIMBRIDGE_LISTEN")]
    listen: SocketAddr,
    /// Where the embedded store keeps its file (default: `<config>/data`).
    #[arg(long, env = "SCIMBRIDGE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// How clients reach this gateway, for `meta.location` (default: `http://<listen address>`).
    #[arg(long, env = "SCIMBRIDGE_PUBLIC_URL")]
    public_url: Option<String>,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a random token: prints the secret once and the line for the tenant file.
    Create {
        /// A label for logs (e.g. `entra-2026-11`).
        #[arg(long, default_value = "default")]
        label: String,
    },
    /// Print the SHA-256 of a token read from standard input.
    Hash,
    /// Add a new token to a tenant file, print its secret once, and optionally set an expiry on
    /// the tenant's other tokens. A running gateway picks the change up by itself.
    Rotate {
        /// Directory holding `tenants/` and `mappings/`.
        #[arg(long, default_value = ".")]
        config: PathBuf,
        /// The tenant id.
        #[arg(long)]
        tenant: String,
        /// The new token's label (e.g. `entra-2026-11`).
        #[arg(long)]
        label: String,
        /// Give the other tokens an expiry this far ahead (`7d`, `24h`), time for the identity
        /// provider to switch to the new one.
        #[arg(long)]
        retire_others_in: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    // The demo binds and exports its settings while the process is still single-threaded.
    let demo_prep = match &cli.command {
        Command::Demo { listen, app_listen, .. } => match DemoPrep::new(*listen, *app_listen) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::FAILURE;
            }
        },
        _ => None,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, demo_prep)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, demo_prep: Option<DemoPrep>) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(args) => serve(args).await,
        Command::Check { config } => Ok(check(&config)),
        Command::Explain { config, tenant, method, target, body } => explain(&config, &tenant, &method, &target, body),
        Command::Demo { config, .. } => match demo_prep {
            Some(prep) => demo(prep, config).await,
            None => Ok(ExitCode::FAILURE),
        },
        Command::DemoApp { listen, api_key, create_delay_ms } => {
            let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("bind {listen}"))?;
            println!("demo-app listening on http://{}", listener.local_addr()?);
            let config = demo_app::Config {
                create_delay: std::time::Duration::from_millis(create_delay_ms),
                ..demo_app::Config::new(api_key)
            };
            demo_app::serve(listener, config, shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Token(t) => token(t),
    }
}

/// Loads and compiles a config directory, printing every problem.
fn load(dir: &Path) -> Option<Registry> {
    let result = config::read_dir(dir).and_then(|set| Registry::build(&set));
    match result {
        Ok(r) => Some(r),
        Err(problems) => {
            eprintln!("{problems}");
            None
        }
    }
}

fn check(dir: &Path) -> ExitCode {
    match load(dir) {
        Some(r) => {
            println!("ok: {} tenant(s): {}", r.len(), r.ids().join(", "));
            ExitCode::SUCCESS
        }
        None => ExitCode::FAILURE,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let Some(registry) = load(&args.config) else {
        eprintln!("refusing to start: fix the configuration above");
        return Ok(ExitCode::FAILURE);
    };
    let data_dir = args.data_dir.unwrap_or_else(|| args.config.join("data"));
    let store = RedbStore::open(&data_dir.join("scimbridge.redb")).context("open the embedded store")?;
    let listener = tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("bind {}", args.listen))?;
    run_gateway(registry, Arc::new(store), listener, args.public_url, Some(args.config)).await?;
    Ok(ExitCode::SUCCESS)
}

async fn run_gateway(
    registry: Registry,
    store: Arc<dyn Store>,
    listener: tokio::net::TcpListener,
    public_url: Option<String>,
    watch: Option<PathBuf>,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let public_url = public_url.unwrap_or_else(|| format!("http://{addr}"));
    let state = AppState {
        registry: Arc::new(ArcSwap::from_pointee(registry)),
        provisioner: Arc::new(Provisioner::new(store, &public_url)),
        limits: Limits::default(),
    };
    if let Some(dir) = watch {
        tokio::spawn(scimbridge::reload::watch(dir, state.registry.clone(), std::time::Duration::from_secs(2)));
    }
    // Tests and scripts read this line to learn the port.
    println!("scimbridge listening on http://{addr}");
    tracing::info!(%addr, tenants = state.registry.load().len(), "serving");
    server::serve(listener, state, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// The demo's listeners and app key, prepared before the runtime starts.
struct DemoPrep {
    gateway: std::net::TcpListener,
    app: std::net::TcpListener,
    api_key: String,
}

impl DemoPrep {
    fn new(listen: SocketAddr, app_listen: SocketAddr) -> anyhow::Result<Self> {
        let bind = |a: SocketAddr| -> anyhow::Result<std::net::TcpListener> {
            let l = std::net::TcpListener::bind(a).with_context(|| format!("bind {a}"))?;
            l.set_nonblocking(true)?;
            Ok(l)
        };
        let gateway = bind(listen)?;
        let app = bind(app_listen)?;
        // A fresh key per run unless given, so the repository holds no backend secret.
        let api_key = std::env::var("DEMO_APP_API_KEY").unwrap_or_else(|_| uuid::Uuid::new_v4().simple().to_string());
        let app_url = format!("http://{}", app.local_addr()?);
        // SAFETY: called from `main` before the runtime or any other thread exists.
        unsafe {
            std::env::set_var("DEMO_APP_URL", &app_url);
            std::env::set_var("DEMO_APP_API_KEY", &api_key);
        }
        Ok(Self { gateway, app, api_key })
    }
}

async fn demo(prep: DemoPrep, config_dir: PathBuf) -> anyhow::Result<ExitCode> {
    let app_listener = tokio::net::TcpListener::from_std(prep.app)?;
    println!("demo-app listening on http://{}", app_listener.local_addr()?);
    let app = tokio::spawn(demo_app::serve(app_listener, demo_app::Config::new(prep.api_key), shutdown_signal()));
    let Some(registry) = load(&config_dir) else {
        eprintln!("refusing to start: fix the configuration above (run from the repository root, or pass --config)");
        return Ok(ExitCode::FAILURE);
    };
    let store = RedbStore::in_memory().context("create the demo store")?;
    let listener = tokio::net::TcpListener::from_std(prep.gateway)?;
    println!("demo tenant: http://{}/demo/scim/v2 (token: demo-token)", listener.local_addr()?);
    run_gateway(registry, Arc::new(store), listener, None, None).await?;
    app.abort();
    Ok(ExitCode::SUCCESS)
}

fn explain(dir: &Path, tenant: &str, method: &str, target: &str, body: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let Some(registry) = load(dir) else { return Ok(ExitCode::FAILURE) };
    let Some(t) = registry.get(tenant) else {
        eprintln!("no tenant `{tenant}`; tenants: {}", registry.ids().join(", "));
        return Ok(ExitCode::FAILURE);
    };
    let body: Option<serde_json::Value> = match body {
        Some(p) => {
            let text = if p.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&p).with_context(|| format!("read {}", p.display()))?
            };
            Some(serde_json::from_str(&text).context("the body is not JSON")?)
        }
        None => None,
    };
    match scimbridge::explain::explain(t, method, target, body.as_ref()) {
        Ok(steps) => {
            let mut n = 0;
            for step in steps {
                match step.request {
                    Some(req) => {
                        n += 1;
                        let query = if req.query.is_empty() {
                            String::new()
                        } else {
                            let q: Vec<String> = req.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
                            format!("?{}", q.join("&"))
                        };
                        // Decoded for reading: placeholders stay legible (the real call encodes them).
                        let path = percent_encoding::percent_decode_str(&req.path).decode_utf8_lossy();
                        println!("{n}. {}: {} {}{path}{query}", step.what, req.method, t.backend.base_url());
                        for (k, v) in &req.headers {
                            println!("   {k}: {v}");
                        }
                        match &req.body {
                            Some(scimbridge::mapping::call::Body::Json(v)) => {
                                println!("   {}", serde_json::to_string_pretty(v)?.replace('\n', "\n   "));
                            }
                            Some(scimbridge::mapping::call::Body::Form(f)) => {
                                let fields: Vec<String> = f.iter().map(|(k, v)| format!("{k}={v}")).collect();
                                println!("   (form) {}", fields.join("&"));
                            }
                            None => {}
                        }
                    }
                    None => println!("   · {}", step.what),
                }
            }
            if t.mapping.auth.is_some() {
                println!("   · every call also carries the mapping's `http.auth` credentials");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("the gateway would answer {}: {}", e.status, e.detail);
            Ok(ExitCode::FAILURE)
        }
    }
}

fn token(cmd: TokenCommand) -> anyhow::Result<ExitCode> {
    use scimbridge::auth::{generate_secret, hash_token};
    match cmd {
        TokenCommand::Create { label } => {
            let secret = generate_secret();
            let hash = hex::encode(hash_token(&secret));
            println!("token (shown once; give it to the identity provider): {secret}");
            println!("tenant file entry:\n  - label: {label}\n    sha256: \"{hash}\"");
        }
        TokenCommand::Hash => {
            let mut input = String::new();
            std::io::stdin().read_line(&mut input).context("read the token from standard input")?;
            println!("{}", hex::encode(hash_token(input.trim_end_matches(['\n', '\r']))));
        }
        TokenCommand::Rotate { config, tenant, label, retire_others_in } => {
            return rotate(&config, &tenant, &label, retire_others_in.as_deref());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `token rotate`: edits the tenant file in place (comments kept), checks the edit changed nothing
/// but the token list, and replaces the file atomically.
fn rotate(config: &Path, tenant: &str, label: &str, retire_in: Option<&str>) -> anyhow::Result<ExitCode> {
    use scimbridge::auth::{generate_secret, hash_token};
    use scimbridge::tenant::edit;
    scimbridge::tenant::validate_id(tenant).map_err(anyhow::Error::msg)?;
    let file = ["yaml", "yml"]
        .iter()
        .map(|ext| config.join("tenants").join(format!("{tenant}.{ext}")))
        .find(|p| p.is_file())
        .with_context(|| format!("no tenant file for `{tenant}` under {}", config.join("tenants").display()))?;
    let text = std::fs::read_to_string(&file).with_context(|| format!("read {}", file.display()))?;
    let before: serde_json::Value =
        config::parse_yaml(&text).map_err(|(_, _, m)| anyhow::anyhow!("{}: {m}", file.display()))?;
    let tokens = |v: &serde_json::Value| v["auth"]["tokens"].as_array().cloned().unwrap_or_default();
    if tokens(&before).iter().any(|t| t["label"] == label) {
        anyhow::bail!("tenant `{tenant}` already has a token labelled `{label}`");
    }
    let expires = match retire_in {
        None => None,
        Some(d) => {
            let secs = edit::parse_duration(d).map_err(anyhow::Error::msg)?;
            let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(i64::try_from(secs)?);
            Some(at.replace_nanosecond(0)?.format(&time::format_description::well_known::Rfc3339)?)
        }
    };
    let secret = generate_secret();
    let hash = hex::encode(hash_token(&secret));
    let edited = edit::add_token(&text, label, &hash, expires.as_deref()).map_err(anyhow::Error::msg)?;
    // The edit must change the token list and nothing else.
    let after: serde_json::Value =
        config::parse_yaml(&edited).map_err(|(_, _, m)| anyhow::anyhow!("the edited file does not parse: {m}"))?;
    let (old, new) = (tokens(&before), tokens(&after));
    let strip = |mut t: serde_json::Value| {
        if let Some(o) = t.as_object_mut() {
            o.remove("expires");
        }
        t
    };
    let rest = |mut v: serde_json::Value| {
        if let Some(a) = v.get_mut("auth").and_then(|a| a.as_object_mut()) {
            a.remove("tokens");
        }
        v
    };
    let same_old =
        old.len() + 1 == new.len() && old.iter().zip(&new).all(|(a, b)| strip(a.clone()) == strip(b.clone()));
    let added = new.last().is_some_and(|t| t["label"] == label && t["sha256"] == hash.as_str());
    if !same_old || !added || rest(before) != rest(after) {
        anyhow::bail!(
            "could not edit {} safely; add the token by hand:\n  - label: {label}\n    sha256: \"{hash}\"",
            file.display()
        );
    }
    let tmp = file.with_extension("rotate-tmp");
    std::fs::write(&tmp, &edited).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, &file).with_context(|| format!("replace {}", file.display()))?;
    println!("token (shown once; give it to the identity provider): {secret}");
    println!("added `{label}` to {}", file.display());
    if let Some(at) = expires {
        println!("the tenant's other tokens now expire at {at} unless they already expired earlier");
    }
    println!(
        "a running gateway loads the change within seconds (or at once on SIGHUP); run `scimbridge check` to confirm"
    );
    Ok(ExitCode::SUCCESS)
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
