//! The report's way to stdout: a reader that went away (`| head`) ends it quietly, a
//! stdout that is full or closed is an error (exit 2), so no metrics vanish silently.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;

/// Writes the report to stdout. A reader that went away (`| head`) ends the output
/// quietly, as command-line tools do; any other failure (a full disk, a closed
/// stdout) is an error, so no metrics are lost silently.
pub fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    match write_all_to_stdout(bytes) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("cannot write the report to stdout"),
    }
}

/// Whether the process started with stdout closed (see [`guard_stdio`]).
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Call first thing in `main`: notes whether the process was started with stdout
/// closed, so that a report written to it fails (exit 2) instead of vanishing. Rust
/// puts `/dev/null` on a standard descriptor the process started without (opened
/// read-write, which a shell's `>/dev/null` never does): that is how it is told
/// (Linux).
pub fn guard_stdio() {
    #[cfg(target_os = "linux")]
    {
        let null = std::fs::read_link("/proc/self/fd/1")
            .is_ok_and(|p| p == std::path::Path::new("/dev/null"));
        // `flags:` in octal; the access mode is its low two bits (2 = O_RDWR).
        let read_write = std::fs::read_to_string("/proc/self/fdinfo/1").is_ok_and(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
                .is_some_and(|f| f & 3 == 2)
        });
        STDOUT_CLOSED.store(null && read_write, Ordering::Release);
    }
}

fn write_all_to_stdout(bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    if STDOUT_CLOSED.load(Ordering::Acquire) {
        return Err(std::io::Error::other("stdout is closed"));
    }
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()
}
