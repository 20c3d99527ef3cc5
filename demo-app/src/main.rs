//! `demo-app`: runs the demo legacy app until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use demo_app::Config;

/// A deliberately un-SCIM-like legacy REST app for scimbridge demos and tests.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// Key clients must send in the X-Api-Key header.
    #[arg(long, env = "DEMO_APP_API_KEY", hide_env_values = true)]
    api_key: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if args.api_key.is_empty() {
        eprintln!("demo-app: --api-key must not be empty");
        return ExitCode::FAILURE;
    }
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("demo-app: cannot listen on {}: {err}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    eprintln!("demo-app listening on http://{}", args.listen);
    let config = Config::new(args.api_key);
    match demo_app::serve(listener, config, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("demo-app: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
