//! C programs shipped in the repository and compiled at run time with the
//! system's `cc` (the bench's exec probe, the scenario client worker).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Writes `source` to `dir/<name>.c` and compiles it to `dir/<name>`
/// (warnings are errors); `what` names the program in messages.
///
/// # Errors
///
/// No `cc` (the message says to install gcc), or its diagnostics.
pub(crate) fn compile(dir: &Path, name: &str, source: &str, what: &str) -> Result<PathBuf, String> {
    let src = dir.join(format!("{name}.c"));
    let bin = dir.join(name);
    std::fs::write(&src, source).map_err(|e| format!("{}: {e}", src.display()))?;
    let out = Command::new("cc")
        .args(["-O2", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .map_err(|e| {
            format!("cannot run cc ({e}): {what} is a C program built at run time; install gcc (apt-get install gcc)")
        })?;
    if !out.status.success() {
        return Err(format!("cc failed on {what}:\n{}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(bin)
}
