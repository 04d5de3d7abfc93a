//! Network namespaces for tests that need a real link (loss, shaping, delay, other
//! addresses): running `ip`/`tc` commands, and a guard that deletes the namespaces however
//! the test ends.

use std::process::Command;

/// Runs a command; its stdout, or why it failed.
pub fn sh(args: &[&str]) -> Result<String, String> {
    let (first, rest) = args.split_first().ok_or("empty command")?;
    let out = Command::new(first)
        .args(rest)
        .output()
        .map_err(|e| format!("{args:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Namespaces deleted (with the veths and TUN devices in them) when dropped.
#[derive(Default)]
pub struct Netns(pub Vec<String>);

impl Netns {
    /// Creates namespace `name` and adds it to the guard.
    pub fn add(&mut self, name: &str) -> Result<(), String> {
        sh(&["ip", "netns", "add", name])?;
        self.0.push(name.to_owned());
        Ok(())
    }

    /// Runs `f` on a thread inside namespace `name` (the sockets it creates live there).
    #[cfg(target_os = "linux")]
    pub fn run_in<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{name}");
        std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            let file = std::fs::File::open(&path).expect("netns file");
            // SAFETY: setns on this thread only, with a namespace descriptor we hold open.
            assert_eq!(
                unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) },
                0,
                "setns {path}"
            );
            f()
        })
        .join()
        .expect("namespace thread")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = sh(&["ip", "netns", "del", ns]);
        }
    }
}
