//! `vfio-dmabuf serve`: a server in the foreground until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM};

use crate::devices::{load_with_settings, DevicesError};

/// Why `serve` failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The devices could not be had.
    #[error(transparent)]
    Devices(#[from] DevicesError),
    /// The server could not start.
    #[error(transparent)]
    Server(#[from] server::ServerError),
    /// The signal handlers could not be installed.
    #[error("cannot install the SIGINT/SIGTERM handlers")]
    Signals(#[source] std::io::Error),
}

/// Serves the devices of `devices` (the demo's without it) on `socket`,
/// with `ack_timeout` (else the file's `[server] ack-timeout`, else 1 s) as
/// the bound on each process's answer to a revoke, until SIGINT or
/// SIGTERM, then stops: every connection ends, every open
/// file is released, the socket file is removed.
///
/// # Errors
///
/// As [`ServeError`].
pub fn run(devices: Option<PathBuf>, socket: PathBuf, ack_timeout: Option<Duration>) -> Result<(), ServeError> {
    let (devices, settings) = load_with_settings(devices.as_deref())?;
    for d in &devices {
        tracing::info!(bdf = %d.vdev.bdf(), group = d.group, cdev = d.cdev_index, "device");
    }
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).map_err(ServeError::Signals)?;
    let mut server = server::Server::new(devices)?;
    if let Some(t) = ack_timeout.or(settings.ack_timeout) {
        server.set_ack_timeout(t);
    }
    server.bind(&socket)?;
    let handle = server.spawn()?;
    eprintln!("-i- serving on {} (export {}={0}); Ctrl-C stops", socket.display(), wire::SOCKET_ENV);
    if let Some(sig) = signals.forever().next() {
        tracing::info!(signal = sig, "stopping");
    }
    let cut_offs = handle.cut_offs();
    handle.shutdown();
    if cut_offs > 0 {
        eprintln!("-W- {cut_offs} client cut-off(s): a process did not acknowledge a revoke within the bound");
    }
    Ok(())
}
