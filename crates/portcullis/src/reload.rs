//! Reload triggers: SIGHUP, and changes to the config file or the TLS files it names
//! (debounced, so an editor's save-as-rename or a burst of writes reloads once).

use crate::state::Gateway;
use notify::{EventKind, RecursiveMode, Watcher};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Quiet time after the last file event before reloading.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// Watches the files of the current snapshot and reloads when one changes. Runs until the
/// returned handle is dropped or aborted.
pub fn watch_files(gw: Arc<Gateway>) -> notify::Result<tokio::task::JoinHandle<()>> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<notify::Event>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            let _ = tx.send(ev);
        }
    })?;
    // Watch the directories: editors and Kubernetes replace files by renaming, which a watch
    // on the file itself would lose.
    let mut watched = watched_paths(&gw);
    let mut dirs = HashSet::new();
    for f in &watched {
        let dir = match f.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if dirs.insert(dir.clone()) {
            watcher.watch(&dir, RecursiveMode::NonRecursive)?;
        }
    }
    Ok(tokio::spawn(async move {
        let _keep = watcher;
        while let Some(ev) = rx.recv().await {
            if !relevant(&ev, &watched) {
                continue;
            }
            // Debounce: wait until events stop for DEBOUNCE.
            while let Ok(Some(_)) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {}
            tracing::info!("configuration files changed, reloading");
            let _ = gw.reload().await;
            watched = watched_paths(&gw);
        }
    }))
}

fn watched_paths(gw: &Gateway) -> HashSet<PathBuf> {
    let rt = gw.runtime.load();
    rt.watched_files.iter().map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone())).collect()
}

fn relevant(ev: &notify::Event, watched: &HashSet<PathBuf>) -> bool {
    matches!(ev.kind, EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_))
        && ev.paths.iter().any(|p| watched.contains(&std::path::absolute(p).unwrap_or_else(|_| p.clone())))
}

/// Takes over SIGHUP (whose default action ends the process). Call it before binding the
/// listeners: a SIGHUP sent as soon as the gateway accepts connections must reload it, not
/// kill it. Signals that arrive before [`on_sighup`] runs are kept and acted on then.
#[cfg(unix)]
pub fn take_sighup() -> std::io::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
}

/// Reloads on every SIGHUP (from [`take_sighup`]) until the task is aborted.
#[cfg(unix)]
pub fn on_sighup(gw: Arc<Gateway>, mut hup: tokio::signal::unix::Signal) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP received, reloading");
            let _ = gw.reload().await;
        }
    })
}
