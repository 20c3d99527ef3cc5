//! The `scimbridge` command: `serve`, `check`, `explain`, `demo`, `demo-app`, `token`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use clap::{Parser, Subcommand};

use scimbridge::audit::{self, Audit};
use scimbridge::config;
use scimbridge::config::duration::{parse_duration, parse_nonzero_duration};
use scimbridge::provision::Provisioner;
use scimbridge::server::listener::{ConnectionLimits, MIN_HEADER_BYTES};
use scimbridge::server::tls::{self, CertFiles, ReloadingCert};
use scimbridge::server::{self, AppState, Limits};
use scimbridge::store::Store;
use scimbridge::store::instrumented::Instrumented;
use scimbridge::store::redb::RedbStore;
use scimbridge::store::redis::{RedisConfig, RedisStore, RedisTls};
use scimbridge::telemetry::{self, LogFormat};
use scimbridge::tenant::{Registry, Shared};

/// mimalloc: a request allocates and frees many small objects (JSON values, header maps) across
/// threads; glibc's malloc spent a quarter of the gateway's instructions on them (bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    Serve(Box<ServeArgs>),
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
    /// A tenant's state in a store: export, import, purge, or migrate it between stores.
    #[command(subcommand)]
    Tenant(TenantCommand),
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Write every record of a tenant to standard output as JSON lines.
    Export {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        at: StoreAt,
    },
    /// Read records written by `export` from standard input into the store.
    Import {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        at: StoreAt,
    },
    /// Remove every record of a tenant from the store.
    Purge {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        at: StoreAt,
        /// Confirms the purge.
        #[arg(long)]
        yes: bool,
    },
    /// Copy a tenant's records from one store to another (`--from embedded --to redis://…`) and
    /// verify the copy. Stop the gateways using the source first.
    Migrate {
        #[arg(long)]
        tenant: String,
        /// `embedded` or a Redis URL.
        #[arg(long)]
        from: String,
        /// `embedded` or a Redis URL.
        #[arg(long)]
        to: String,
        /// Directory holding `tenants/` and `mappings/`.
        #[arg(long, default_value = ".")]
        config: PathBuf,
        /// The embedded store's directory (default: `<config>/data`).
        #[arg(long, env = "SCIMBRIDGE_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Redis key prefix, on either side.
        #[arg(long, env = "SCIMBRIDGE_STORE_PREFIX", default_value = "scimbridge")]
        store_prefix: String,
        #[command(flatten)]
        tls: StoreTlsArgs,
    },
}

/// Which store a `tenant` command works on.
#[derive(clap::Args)]
struct StoreAt {
    /// Directory holding `tenants/` and `mappings/`.
    #[arg(long, default_value = ".")]
    config: PathBuf,
    /// The embedded store's directory (default: `<config>/data`).
    #[arg(long, env = "SCIMBRIDGE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    store: StoreArgs,
}

impl StoreAt {
    async fn open(&self) -> anyhow::Result<Arc<dyn Store>> {
        let data_dir = self.data_dir.clone().unwrap_or_else(|| self.config.join("data"));
        Ok(self.store.open(&data_dir).await?.0)
    }
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
    /// How clients reach this gateway, for `meta.location` (default: `http(s)://<listen address>`).
    #[arg(long, env = "SCIMBRIDGE_PUBLIC_URL")]
    public_url: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    listener: ListenerArgs,
    #[command(flatten)]
    telemetry: TelemetryArgs,
    /// Append the audit trail (one JSON line per change) to this file, `-` for stdout; reopened
    /// on SIGHUP, for logrotate. With an OTLP endpoint the events are also OTLP log records.
    #[arg(long, env = "SCIMBRIDGE_AUDIT_LOG")]
    audit_log: Option<audit::Target>,
}

/// Traces and metrics (docs/operations.md, "Telemetry"). Unset OTLP flags fall back to the
/// standard `OTEL_EXPORTER_OTLP_*` variables; `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
/// `OTEL_TRACES_SAMPLER` and the batch and export intervals are read as the standard says.
#[derive(clap::Args)]
struct TelemetryArgs {
    /// Address of the admin listener (`/metrics` for Prometheus, `/healthz`, `/readyz`); off
    /// unless given. Keep it private: it is not authenticated.
    #[arg(long, env = "SCIMBRIDGE_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,
    /// OTLP collector to send traces and metrics to (`http://collector:4318`; over HTTP,
    /// `/v1/traces` and `/v1/metrics` are appended). Default: `OTEL_EXPORTER_OTLP_ENDPOINT`; with
    /// neither, nothing is exported.
    #[arg(long, env = "SCIMBRIDGE_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// OTLP transport. Default: `OTEL_EXPORTER_OTLP_PROTOCOL`, else http/protobuf.
    #[arg(long, env = "SCIMBRIDGE_OTLP_PROTOCOL", value_enum)]
    otlp_protocol: Option<telemetry::Protocol>,
    /// A header for every export, `name=value` (repeatable; the variable takes a comma-separated
    /// list), in addition to `OTEL_EXPORTER_OTLP_HEADERS`.
    #[arg(long = "otlp-header", env = "SCIMBRIDGE_OTLP_HEADERS", value_delimiter = ',', hide_env_values = true,
          value_parser = parse_header)]
    otlp_headers: Vec<(String, String)>,
    /// Share of successful reads (get, list, search) whose traces are exported, 0 to 1; a failed
    /// request (an error or a 4xx/5xx answer anywhere in it) and a change are always traced; 1
    /// exports every trace.
    #[arg(long, env = "SCIMBRIDGE_TRACE_READS", value_parser = parse_share,
          default_value_t = telemetry::DEFAULT_TRACE_READS)]
    trace_reads: f64,
}

impl TelemetryArgs {
    fn config(&self) -> telemetry::Config {
        telemetry::Config {
            otlp: telemetry::OtlpConfig {
                endpoint: self.otlp_endpoint.clone(),
                protocol: self.otlp_protocol,
                headers: self.otlp_headers.clone(),
            },
            prometheus: self.admin_listen.is_some(),
            trace_reads: self.trace_reads,
        }
    }
}

/// A share from 0 to 1.
fn parse_share(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("`{s}` is not a share from 0 to 1")),
    }
}

/// `name=value`, as `OTEL_EXPORTER_OTLP_HEADERS` writes one header.
fn parse_header(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
        // The value may be a secret: never echo it.
        _ => Err("expected name=value".to_owned()),
    }
}

/// Where the gateway keeps its state (docs/operations.md, "State store").
#[derive(clap::Args)]
struct StoreArgs {
    /// `embedded` (one redb file, for one process) or a Redis URL shared by replicas: `redis://…`,
    /// `rediss://…` for TLS, `redis-cluster://host:port,host:port` (`rediss-cluster://`) for a
    /// Redis Cluster; user and password in the URL for ACLs.
    #[arg(long, env = "SCIMBRIDGE_STORE", default_value = "embedded", hide_env_values = true)]
    store: String,
    /// First part of every Redis key, so deployments can share one Redis.
    #[arg(long, env = "SCIMBRIDGE_STORE_PREFIX", default_value = "scimbridge")]
    store_prefix: String,
    /// Timeout of each Redis command; a request whose state cannot be read in time answers 503.
    #[arg(long, env = "SCIMBRIDGE_STORE_TIMEOUT", default_value = "2s", value_parser = parse_nonzero_duration)]
    store_timeout: Duration,
    /// Memory for the embedded store's cache of records, in MiB (reads on every request's path
    /// are answered from it; 8 MiB holds about 25,000 users and groups, all tenants together).
    /// 0 turns it off.
    #[arg(long, env = "SCIMBRIDGE_STORE_CACHE_MB", default_value_t = 8)]
    store_cache_mb: u64,
    #[command(flatten)]
    tls: StoreTlsArgs,
}

impl StoreArgs {
    /// Opens the chosen store.
    async fn open(&self, data_dir: &Path) -> anyhow::Result<Opened> {
        let cache = self.store_cache_mb.saturating_mul(1024 * 1024);
        open_store(&self.store, &self.store_prefix, self.store_timeout, &self.tls, data_dir, cache).await
    }
}

/// Trust and identity for a Redis store reached over TLS.
#[derive(clap::Args)]
struct StoreTlsArgs {
    /// PEM CA certificates to trust for `rediss://` instead of the system's roots.
    #[arg(long, env = "SCIMBRIDGE_STORE_TLS_CA")]
    store_tls_ca: Option<PathBuf>,
    /// PEM client certificate chain, for a Redis that requires client certificates.
    #[arg(long, env = "SCIMBRIDGE_STORE_TLS_CERT", requires = "store_tls_key")]
    store_tls_cert: Option<PathBuf>,
    /// PEM private key of --store-tls-cert.
    #[arg(long, env = "SCIMBRIDGE_STORE_TLS_KEY", requires = "store_tls_cert")]
    store_tls_key: Option<PathBuf>,
}

impl StoreTlsArgs {
    fn load(&self) -> anyhow::Result<RedisTls> {
        let read = |p: &Path| std::fs::read(p).with_context(|| format!("read {}", p.display()));
        let ca = self.store_tls_ca.as_deref().map(read).transpose()?;
        let client = match (&self.store_tls_cert, &self.store_tls_key) {
            (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
            _ => None,
        };
        Ok(RedisTls { ca, client })
    }
}

/// An open store, and with Redis the rate limits all replicas share.
type Opened = (Arc<dyn Store>, Option<Shared>);

/// Opens a store named as `--store` names it: `embedded` (under `data_dir`) or a Redis URL.
async fn open_store(
    spec: &str,
    prefix: &str,
    timeout: Duration,
    tls: &StoreTlsArgs,
    data_dir: &Path,
    cache_bytes: u64,
) -> anyhow::Result<Opened> {
    if spec == "embedded" {
        let path = data_dir.join("scimbridge.redb");
        let store = RedbStore::open(&path, cache_bytes)
            .with_context(|| format!("open the embedded store {}", path.display()))?;
        return Ok((Arc::new(store), None));
    }
    let redis = Arc::new(connect_redis(spec, prefix, timeout, tls.load()?).await?);
    Ok((redis.clone(), Some(Shared { limits: redis.clone(), tokens: redis })))
}

async fn connect_redis(url: &str, prefix: &str, timeout: Duration, tls: RedisTls) -> anyhow::Result<RedisStore> {
    if !url.starts_with("redis") {
        anyhow::bail!(
            "a store is `embedded` or a Redis URL (redis://, rediss://, redis-cluster://, rediss-cluster://)"
        );
    }
    let config = RedisConfig { url: url.to_owned(), prefix: prefix.to_owned(), timeout, tls };
    // The URL may carry a password: errors name the store, never the URL.
    let store = RedisStore::connect(&config).await.map_err(|e| anyhow::anyhow!("connect to the Redis store: {e}"))?;
    tracing::info!(prefix = %prefix, "state store: Redis");
    Ok(store)
}

/// TLS and connection limits of `serve`'s listener (docs/operations.md, "Listener").
#[derive(clap::Args)]
struct ListenerArgs {
    /// PEM certificate chain (server certificate first) to serve HTTPS; needs --tls-key. Reloaded
    /// when the file changes and on SIGHUP.
    #[arg(long, env = "SCIMBRIDGE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of the certificate; needs --tls-cert.
    #[arg(long, env = "SCIMBRIDGE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Longest a client may take to send a request's headers (`500ms`, `30s`, `2m`), counted from
    /// when the connection waits for a request: it also closes idle HTTP/1.1 keep-alive connections.
    #[arg(long, env = "SCIMBRIDGE_HEADER_READ_TIMEOUT", default_value = "30s", value_parser = parse_nonzero_duration)]
    header_read_timeout: Duration,
    /// Largest request head in bytes; a larger one is answered 431.
    #[arg(long, env = "SCIMBRIDGE_MAX_HEADER_BYTES", default_value_t = 32 * 1024,
          value_parser = clap::value_parser!(u32).range(i64::from(MIN_HEADER_BYTES)..=1024 * 1024))]
    max_header_bytes: u32,
    /// Close a connection that has had no request in flight for this long (`0`: never); HTTP/2
    /// pings do not count as activity.
    #[arg(long, env = "SCIMBRIDGE_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// HTTP/2 keep-alive ping interval (`0`: no pings).
    #[arg(long, env = "SCIMBRIDGE_H2_KEEPALIVE_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    h2_keepalive_interval: Duration,
    /// How long an HTTP/2 keep-alive ping may go unanswered before the connection is closed.
    #[arg(long, env = "SCIMBRIDGE_H2_KEEPALIVE_TIMEOUT", default_value = "20s", value_parser = parse_nonzero_duration)]
    h2_keepalive_timeout: Duration,
    /// Longest a TLS handshake may take.
    #[arg(long, env = "SCIMBRIDGE_TLS_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_nonzero_duration)]
    tls_handshake_timeout: Duration,
    /// Most connections open at once; more wait in the listen backlog (default: no limit).
    #[arg(long, env = "SCIMBRIDGE_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: Option<u32>,
    /// On SIGTERM or SIGINT: how long in-flight requests may take to finish before the process exits.
    #[arg(long, env = "SCIMBRIDGE_DRAIN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    drain_timeout: Duration,
}

impl ListenerArgs {
    fn limits(&self) -> ConnectionLimits {
        let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
        ConnectionLimits {
            header_read_timeout: self.header_read_timeout,
            max_header_bytes: self.max_header_bytes,
            idle_timeout: nonzero(self.idle_timeout),
            h2_keepalive_interval: nonzero(self.h2_keepalive_interval),
            h2_keepalive_timeout: self.h2_keepalive_timeout,
            tls_handshake_timeout: self.tls_handshake_timeout,
            max_connections: self.max_connections.map(|n| n as usize),
            drain_timeout: self.drain_timeout,
        }
    }

    fn cert_files(&self) -> Option<CertFiles> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(CertFiles { cert: cert.clone(), key: key.clone() }),
            _ => None,
        }
    }
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
    no_huge_pages();
    prompt_purge();
    let cli = Cli::parse();
    // One TLS provider for the whole process (listener and calls to apps), set before anything uses
    // rustls; should a dependency ever enable a second provider, rustls could not pick on its own.
    // "Already installed" is fine: it can only be this one.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
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
    // Blocking threads run the embedded store's reads that miss its cache, its one write at a
    // time, and name lookups: a few dozen are plenty, and each idle one keeps a stack and an
    // allocator cache (tokio's default allows 512).
    let runtime = match tokio::runtime::Builder::new_multi_thread().max_blocking_threads(32).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let telemetry = match &cli.command {
        Command::Serve(args) => args.telemetry.config(),
        _ => telemetry::Config::default(),
    };
    let telemetry = {
        // Exporters are built on the runtime they send on.
        let _runtime = runtime.enter();
        telemetry::init(cli.log_format, &telemetry)
    };
    let telemetry = match telemetry {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: telemetry: {e}");
            return ExitCode::FAILURE;
        }
    };
    let exports = Exports { scrape: telemetry.scrape(), audit: telemetry.audit_export() };
    let code = match runtime.block_on(run(cli.command, demo_prep, exports)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    };
    // Flushes buffered spans, metrics and audit records while the runtime they are sent on still runs.
    drop(telemetry);
    code
}

/// What `serve` takes from the telemetry `main` started.
struct Exports {
    scrape: Option<telemetry::Scrape>,
    /// Where audit records go over OTLP.
    audit: Option<telemetry::AuditExport>,
}

async fn run(command: Command, demo_prep: Option<DemoPrep>, exports: Exports) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(args) => serve(*args, exports).await,
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
        Command::Tenant(t) => tenant_state(t).await,
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

async fn serve(args: ServeArgs, exports: Exports) -> anyhow::Result<ExitCode> {
    let Some(registry) = load(&args.config) else {
        eprintln!("refusing to start: fix the configuration above");
        return Ok(ExitCode::FAILURE);
    };
    let cert = match args.listener.cert_files() {
        Some(files) => match ReloadingCert::load(files, tls::provider()) {
            Ok(c) => Some(Arc::new(c)),
            Err(e) => {
                eprintln!("error: TLS certificate: {e}");
                eprintln!("refusing to start: fix the certificate or key above");
                return Ok(ExitCode::FAILURE);
            }
        },
        None => None,
    };
    let data_dir = args.data_dir.unwrap_or_else(|| args.config.join("data"));
    let (store, shared) = args.store.open(&data_dir).await?;
    let listener = tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("bind {}", args.listen))?;
    let (audit, audit_writer) = Audit::start(args.audit_log, exports.audit).await?;
    let admin = match (args.telemetry.admin_listen, exports.scrape) {
        (Some(addr), Some(scrape)) => {
            let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("bind {addr}"))?;
            Some(Admin { listener, scrape })
        }
        _ => None,
    };
    let front = Front { listener, cert, limits: args.listener.limits(), admin };
    let served = run_gateway(registry, (store, shared), front, audit, args.public_url, Some(args.config)).await;
    // Requests have drained: write the last audit events before exiting, even after an error.
    if let Some(writer) = audit_writer {
        writer.finish().await;
    }
    served?;
    Ok(ExitCode::SUCCESS)
}

/// The listening side of the gateway: its socket, its certificate when it speaks TLS, its limits,
/// and the admin listener if there is one.
struct Front {
    listener: tokio::net::TcpListener,
    cert: Option<Arc<ReloadingCert>>,
    limits: ConnectionLimits,
    admin: Option<Admin>,
}

/// The admin listener: metrics and health, apart from the SCIM traffic.
struct Admin {
    listener: tokio::net::TcpListener,
    scrape: telemetry::Scrape,
}

async fn run_gateway(
    mut registry: Registry,
    (store, shared): (Arc<dyn Store>, Option<Shared>),
    front: Front,
    audit: Audit,
    public_url: Option<String>,
    watch: Option<PathBuf>,
) -> anyhow::Result<()> {
    let addr = front.listener.local_addr()?;
    let scheme = if front.cert.is_some() { "https" } else { "http" };
    let public_url = public_url.unwrap_or_else(|| format!("{scheme}://{addr}"));
    let shared_limits = shared.as_ref().map(|s| s.limits.clone());
    if let Some(shared) = shared {
        registry.share_with_replicas(shared);
    }
    let store: Arc<dyn Store> = Arc::new(Instrumented::new(store));
    let state = AppState {
        registry: Arc::new(ArcSwap::from_pointee(registry)),
        provisioner: Arc::new(Provisioner::new(store, &public_url)),
        limits: Limits::default(),
        shared_limits,
        audit,
    };
    let every = Duration::from_secs(2);
    if let Some(dir) = watch {
        tokio::spawn(scimbridge::reload::watch(dir, state.registry.clone(), every));
    }
    let tls = match &front.cert {
        Some(cert) => {
            tokio::spawn(cert.clone().watch(every));
            tracing::info!(cert = %cert.files().cert.display(), leaf_sha256 = %tls::leaf_sha256(&cert.current()), "TLS certificate loaded");
            Some(tls::server_config(cert.clone()).context("TLS configuration")?)
        }
        None => None,
    };
    if let Some(admin) = front.admin {
        let admin_addr = admin.listener.local_addr()?;
        let router = server::admin::router(state.clone(), admin.scrape);
        tokio::spawn(server::listener::serve(
            admin.listener,
            router,
            None,
            ConnectionLimits::default(),
            shutdown_signal(),
        ));
        // Tests and scripts read this line to learn the admin port.
        println!("scimbridge admin listening on http://{admin_addr}");
    }
    // Tests and scripts read this line to learn the port.
    println!("scimbridge listening on {scheme}://{addr}");
    tracing::info!(%addr, tls = tls.is_some(), tenants = state.registry.load().len(), "serving");
    server::serve(front.listener, state, tls, front.limits, shutdown_signal()).await;
    tracing::info!("stopped");
    Ok(())
}

/// Asks the kernel not to back this process's memory with transparent huge pages. Where THP is
/// `always`, mimalloc's arenas, touched a little per thread, would each be mapped 2 MiB at a time:
/// an idle gateway held 25 MiB instead of 17 (bench/README.md). A proxy this small gains nothing
/// from huge pages.
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and changes a flag of this process;
    // a failure (an old kernel) leaves the default, which is only a matter of memory.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// `mi_option_purge_delay`: its place in mimalloc's `mi_option_e`, the same in v2 and v3 (the
/// bindings name it for neither).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// How long mimalloc keeps memory freed before it returns it to the kernel. v3's default is a
/// second, during which a burst's freed pages still count in the RSS: a peak under load was about
/// 10 MiB higher (bench/README.md). At 10 ms (v2's value) pages went back and were faulted in
/// again so often that the page faults of a gateway exporting traces doubled and its CPU per
/// PATCH grew 16% where its instructions grew 7%; at 100 ms that is gone for a peak about 1 MiB
/// higher.
const PURGE_DELAY_MS: std::ffi::c_long = 100;

/// Has mimalloc return freed memory within [`PURGE_DELAY_MS`], unless `MIMALLOC_PURGE_DELAY`
/// says otherwise: mimalloc's own variable is the operator's to set.
fn prompt_purge() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: sets one integer option; mimalloc reads options atomically, and an option set
    // before or after its first use only changes when later purges happen.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) }
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
    let front = Front { listener, cert: None, limits: ConnectionLimits::default(), admin: None };
    run_gateway(registry, (Arc::new(store), None), front, Audit::off(), None, None).await?;
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
            let secs = parse_duration(d).map_err(anyhow::Error::msg)?.as_secs();
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

/// The first line of an export.
#[derive(serde::Serialize, serde::Deserialize)]
struct ExportHeader {
    scimbridge_export: u32,
    tenant: String,
    records: usize,
}

/// One record of an export.
#[derive(serde::Serialize, serde::Deserialize)]
struct ExportLine {
    kind: String,
    record: scimbridge::store::Record,
}

async fn tenant_state(cmd: TenantCommand) -> anyhow::Result<ExitCode> {
    use scimbridge::mapping::ResourceKind;
    use std::io::{BufRead, Write};
    let check = |t: &str| scimbridge::tenant::validate_id(t).map_err(anyhow::Error::msg);
    match cmd {
        TenantCommand::Export { tenant, at } => {
            check(&tenant)?;
            let all = at.open().await?.scan(&tenant).await?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let header = ExportHeader { scimbridge_export: 1, tenant: tenant.clone(), records: all.len() };
            writeln!(out, "{}", serde_json::to_string(&header)?)?;
            for (kind, record) in all {
                writeln!(out, "{}", serde_json::to_string(&ExportLine { kind: kind.name().to_owned(), record })?)?;
            }
            out.flush()?;
        }
        TenantCommand::Import { tenant, at } => {
            check(&tenant)?;
            let mut lines = std::io::stdin().lock().lines();
            let first = lines.next().context("the export is empty")??;
            let header: ExportHeader = serde_json::from_str(&first).context("not a scimbridge export")?;
            if header.scimbridge_export != 1 {
                anyhow::bail!("export format {} is not supported", header.scimbridge_export);
            }
            let mut records = Vec::with_capacity(header.records);
            for (n, line) in lines.enumerate() {
                let line: ExportLine = serde_json::from_str(&line?).with_context(|| format!("record {}", n + 1))?;
                let kind = ResourceKind::from_name(&line.kind).with_context(|| format!("record {}: kind", n + 1))?;
                records.push((kind, line.record));
            }
            if records.len() != header.records {
                anyhow::bail!("the export promises {} records and holds {}: truncated?", header.records, records.len());
            }
            let store = at.open().await?;
            let n = copy_records(store.as_ref(), &tenant, records).await?;
            eprintln!("imported {n} records of tenant `{tenant}` (exported from `{}`)", header.tenant);
        }
        TenantCommand::Purge { tenant, at, yes } => {
            check(&tenant)?;
            if !yes {
                anyhow::bail!("purging removes every id mapping of `{tenant}`; add --yes to confirm");
            }
            let n = scimbridge::store::purge(at.open().await?.as_ref(), &tenant).await?;
            eprintln!("purged {n} records of tenant `{tenant}`");
        }
        TenantCommand::Migrate { tenant, from, to, config, data_dir, store_prefix, tls } => {
            check(&tenant)?;
            if from == to {
                anyhow::bail!("--from and --to name the same store");
            }
            let data_dir = data_dir.unwrap_or_else(|| config.join("data"));
            let timeout = Duration::from_secs(5);
            // A one-pass copy: a record cache would only hold memory.
            let (source, _) = open_store(&from, &store_prefix, timeout, &tls, &data_dir, 0).await?;
            let (target, _) = open_store(&to, &store_prefix, timeout, &tls, &data_dir, 0).await?;
            let records = source.scan(&tenant).await?;
            let wanted: std::collections::BTreeSet<(ResourceKind, String, String, u64)> =
                records.iter().map(|(k, r)| (*k, r.id.clone(), r.app_id.clone(), r.version)).collect();
            let n = copy_records(target.as_ref(), &tenant, records).await?;
            let copied: std::collections::BTreeSet<(ResourceKind, String, String, u64)> =
                target.scan(&tenant).await?.into_iter().map(|(k, r)| (k, r.id, r.app_id, r.version)).collect();
            if !wanted.is_subset(&copied) {
                anyhow::bail!("the copy does not hold every record; the source is unchanged");
            }
            eprintln!("migrated {n} records of tenant `{tenant}`; verified; the source is unchanged");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Puts records into a store; a record whose app object another record already holds is an error.
async fn copy_records(
    store: &dyn Store,
    tenant: &str,
    records: Vec<(scimbridge::mapping::ResourceKind, scimbridge::store::Record)>,
) -> anyhow::Result<usize> {
    let n = records.len();
    for (kind, record) in records {
        if let Some(holder) = store.put(tenant, kind, record.clone()).await? {
            anyhow::bail!(
                "{} `{}`: its app object {} is already held by `{}` in the target store",
                kind.name(),
                record.id,
                record.app_id,
                holder.id
            );
        }
    }
    Ok(n)
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
