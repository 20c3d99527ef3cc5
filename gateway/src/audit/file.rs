//! The audit log: events as JSON lines appended to a file (or written to stdout) by one background
//! task, fed by a bounded channel, so a request never waits on the disk. On SIGHUP the file is
//! reopened by name (after logrotate moved it away); at shutdown [`Writer::finish`] writes what is
//! queued and flushes.
//!
//! May touch: the audit file (or stdout).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, oneshot};

use super::{AuditError, Drops, Event};

/// Events queued for the writer before further ones are dropped (and counted).
pub(super) const QUEUE: usize = 4096;
/// Events written between two flushes at most, when many are queued.
const BATCH: usize = 256;

/// Where the audit log goes: `--audit-log <path>`, `-` for stdout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Stdout,
    File(PathBuf),
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "" => Err("an empty path; use `-` for stdout".to_owned()),
            "-" => Ok(Self::Stdout),
            path => Ok(Self::File(PathBuf::from(path))),
        }
    }
}

type Output = BufWriter<Box<dyn AsyncWrite + Send + Unpin>>;

async fn open(target: &Target) -> Result<Output, AuditError> {
    let out: Box<dyn AsyncWrite + Send + Unpin> = match target {
        Target::Stdout => Box::new(tokio::io::stdout()),
        Target::File(path) => Box::new(open_file(path).await?),
    };
    Ok(BufWriter::new(out))
}

async fn open_file(path: &Path) -> Result<tokio::fs::File, AuditError> {
    tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
        .map_err(|source| AuditError::Open { path: path.to_owned(), source })
}

/// The running writer task; finish it at shutdown, after the last request.
#[must_use = "finish the writer at shutdown, or queued events are lost"]
pub struct Writer {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    /// Writes what is queued, flushes, and stops.
    pub async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Opens `target` (failing now rather than at the first event) and starts the writer.
pub(super) async fn start(target: Target, drops: Arc<Drops>) -> Result<(mpsc::Sender<Event>, Writer), AuditError> {
    let out = open(&target).await?;
    let (tx, rx) = mpsc::channel(QUEUE);
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(run(target, out, rx, stopped, drops));
    Ok((tx, Writer { stop, task }))
}

async fn run(
    target: Target,
    mut out: Output,
    mut rx: mpsc::Receiver<Event>,
    mut stopped: oneshot::Receiver<()>,
    drops: Arc<Drops>,
) {
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        #[cfg(unix)]
        let reopen = async {
            match hup.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let reopen = std::future::pending::<Option<()>>();
        tokio::select! {
            n = rx.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    break; // every sender is gone
                }
                write(&mut out, &mut batch, &drops).await;
            }
            _ = reopen => {
                if let Target::File(path) = &target {
                    let _ = out.flush().await;
                    match open(&target).await {
                        Ok(fresh) => out = fresh,
                        Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot reopen the audit log; writing on to the old file"),
                    }
                }
            }
            _ = &mut stopped => break,
        }
    }
    // Shutdown: requests have finished, so what is queued is all there will be.
    rx.close();
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        write(&mut out, &mut batch, &drops).await;
    }
}

/// Writes and flushes a batch; events that cannot be written are counted as dropped.
async fn write(out: &mut Output, batch: &mut Vec<Event>, drops: &Drops) {
    let n = batch.len() as u64;
    let mut lost = 0u64;
    let mut failure = None;
    for event in batch.drain(..) {
        let mut line = match serde_json::to_vec(&event) {
            Ok(l) => l,
            Err(e) => {
                lost += 1;
                failure = Some(e.to_string());
                continue;
            }
        };
        line.push(b'\n');
        if let Err(e) = out.write_all(&line).await {
            lost += 1;
            failure = Some(e.to_string());
        }
    }
    if let Err(e) = out.flush().await {
        // What the buffer held is gone; it may have been all of the batch.
        lost = n;
        failure = Some(e.to_string());
    }
    match failure {
        Some(why) => drops.dropped(lost, &format!("cannot write the audit log: {why}")),
        None => drops.recovered(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!("-".parse::<Target>(), Ok(Target::Stdout));
        assert_eq!("/var/log/audit.jsonl".parse::<Target>(), Ok(Target::File("/var/log/audit.jsonl".into())));
        assert!("".parse::<Target>().is_err());
    }
}
