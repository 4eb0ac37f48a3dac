//! `vfio-dmabuf serve`: a server in the foreground until SIGINT or SIGTERM.

use std::path::PathBuf;

use signal_hook::consts::{SIGINT, SIGTERM};

use crate::devices::{load, DevicesError};

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

/// Serves the devices of `devices` (the demo's without it) on `socket`
/// until SIGINT or SIGTERM, then stops: every connection ends, every open
/// file is released, the socket file is removed.
///
/// # Errors
///
/// As [`ServeError`].
pub fn run(devices: Option<PathBuf>, socket: PathBuf) -> Result<(), ServeError> {
    let devices = load(devices.as_deref())?;
    for d in &devices {
        tracing::info!(bdf = %d.vdev.bdf(), group = d.group, cdev = d.cdev_index, "device");
    }
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).map_err(ServeError::Signals)?;
    let mut server = server::Server::new(devices)?;
    server.bind(&socket)?;
    let handle = server.spawn()?;
    eprintln!("-i- serving on {} (export {}={0}); Ctrl-C stops", socket.display(), wire::SOCKET_ENV);
    if let Some(sig) = signals.forever().next() {
        tracing::info!(signal = sig, "stopping");
    }
    handle.shutdown();
    Ok(())
}
