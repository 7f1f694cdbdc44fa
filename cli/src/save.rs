//! `-w FILE` (mitmproxy's `save_stream_file`) and `--set hardump=FILE`.
//!
//! As in mitmdump, the `-w` path may hold strftime patterns (`flows-%Y-%m-%d-%H.mitm`), filled
//! in with the local time for each flow: a new file is opened (its directories created)
//! whenever the formatted path changes.
//!
//! Flows are written after the scripts ran, so files hold their changes. The `-w` writer runs on
//! its own thread: the proxy hands it finished flows through a channel and never waits for the
//! disk. As in mitmdump, a failed write ends the process with status 1 rather than silently
//! leaving traffic unrecorded.

use std::fs::{File, OpenOptions};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::{Sender, channel};
use std::thread::JoinHandle;

use anyhow::Context;
use flowtap_flow::{Filter, FlowWriter};
use flowtap_proto::v1::Flow;
use flowtap_proxy_core::FlowSink;

/// Passes on only the flows matching a filter (the positional filter, `save_stream_filter`).
pub(crate) struct Filtered<S> {
    pub(crate) filter: Filter,
    pub(crate) inner: S,
}

impl<S: FlowSink> FlowSink for Filtered<S> {
    fn needs_bodies(&self) -> bool {
        self.inner.needs_bodies()
    }

    fn flow_finished(&self, flow: &Flow) {
        if self.filter.matches(flow) {
            self.inner.flow_finished(flow);
        }
    }

    fn close(&self) {
        self.inner.close();
    }
}

/// Streams finished flows into a mitmproxy flow file.
pub(crate) struct FileSaver {
    sender: Mutex<Option<Sender<Flow>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl FileSaver {
    /// Opens `spec` for writing: `+path` appends, `path` truncates; strftime patterns in it
    /// are filled in with the local time, now and for every flow.
    pub(crate) fn open(spec: &str) -> anyhow::Result<Self> {
        let (append, pattern) = match spec.strip_prefix('+') {
            Some(rest) => (true, crate::options::expand_tilde(rest)),
            None => (false, crate::options::expand_tilde(spec)),
        };
        let pattern = pattern.to_string_lossy().into_owned();
        let mut path = PathBuf::from(strftime_now(&pattern));
        let file = open_file(&path, append)?;
        let (sender, receiver) = channel::<Flow>();
        let writer = std::thread::Builder::new()
            .name("flow-writer".into())
            .spawn(move || {
                let mut writer = FlowWriter::new(BufWriter::new(file));
                for flow in receiver {
                    let now = PathBuf::from(strftime_now(&pattern));
                    let result = if now == path {
                        writer.add(&flow)
                    } else {
                        path = now;
                        open_file(&path, append)
                            .map_err(|e| std::io::Error::other(format!("{e:#}")))
                            .and_then(|file| {
                                writer = FlowWriter::new(BufWriter::new(file));
                                writer.add(&flow)
                            })
                    };
                    if let Err(e) = result {
                        eprintln!("flowtap: error writing flows to {}: {e}", path.display());
                        std::process::exit(1);
                    }
                }
            })
            .context("starting the flow writer thread")?;
        Ok(Self {
            sender: Mutex::new(Some(sender)),
            writer: Mutex::new(Some(writer)),
        })
    }
}

/// `pattern` formatted with the local time by the C library's `strftime`, as Python's
/// `datetime.today().strftime` does it (a pattern without `%` is returned as is).
fn strftime_now(pattern: &str) -> String {
    if !pattern.contains('%') {
        return pattern.to_string();
    }
    let Ok(format) = std::ffi::CString::new(pattern) else {
        return pattern.to_string();
    };
    // SAFETY: `time` accepts a null pointer; `localtime_r` writes into the zeroed `tm` we own
    // and returns null on failure (checked).
    let tm = unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() {
            return pattern.to_string();
        }
        tm
    };
    let mut size = 256 + pattern.len() * 4;
    loop {
        let mut buf = vec![0u8; size];
        // SAFETY: `buf` has `size` writable bytes, `format` is NUL-terminated and `tm` was
        // filled by `localtime_r`; strftime writes at most `size` bytes including the NUL and
        // returns the length without it, or 0 when the result does not fit.
        let written =
            unsafe { libc::strftime(buf.as_mut_ptr().cast(), size, format.as_ptr(), &tm) };
        if written > 0 || size > 64 * 1024 {
            buf.truncate(written);
            return String::from_utf8_lossy(&buf).into_owned();
        }
        size *= 4;
    }
}

/// Opens (creating it readable by its owner only, 0600: it holds whole flows) the file `-w` or
/// `save_stream_file` writes to. An existing file keeps its mode.
fn open_file(path: &Path, append: bool) -> anyhow::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    OpenOptions::new()
        .mode(0o600)
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(path)
        .with_context(|| format!("opening {} for writing flows", path.display()))
}

impl FlowSink for FileSaver {
    fn needs_bodies(&self) -> bool {
        true
    }

    fn flow_finished(&self, flow: &Flow) {
        if let Some(sender) = self
            .sender
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            let _ = sender.send(flow.clone());
        }
    }

    fn close(&self) {
        // Dropping the sender ends the writer's loop once the queue is written.
        drop(self.sender.lock().unwrap_or_else(|p| p.into_inner()).take());
        if let Some(writer) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = writer.join();
        }
    }
}

/// Keeps every flow and writes a HAR 1.2 file at shutdown (`--set hardump=FILE`).
pub(crate) struct HarDump {
    path: PathBuf,
    flows: Mutex<Vec<Flow>>,
}

impl HarDump {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            flows: Mutex::new(Vec::new()),
        }
    }
}

impl FlowSink for HarDump {
    fn needs_bodies(&self) -> bool {
        true
    }

    fn flow_finished(&self, flow: &Flow) {
        if flow.r#type == "http" {
            self.flows
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(flow.clone());
        }
    }

    fn close(&self) {
        let flows = std::mem::take(&mut *self.flows.lock().unwrap_or_else(|p| p.into_inner()));
        let json = flowtap_flow::har::export_json(&flows);
        match std::fs::write(&self.path, json) {
            Ok(()) => tracing::info!(
                "HAR file saved ({} flows) to {}",
                flows.len(),
                self.path.display()
            ),
            Err(e) => tracing::error!("writing HAR to {}: {e}", self.path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_flow_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("flows.mitm");
        drop(open_file(&path, false).expect("open"));
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn strftime_patterns_take_the_local_time() {
        assert_eq!(strftime_now("flows.mitm"), "flows.mitm");
        let year = strftime_now("x-%Y-%%.mitm");
        assert!(
            year.starts_with("x-") && year.ends_with("-%.mitm"),
            "{year}"
        );
        let digits = &year[2..6];
        assert!(digits.bytes().all(|b| b.is_ascii_digit()), "{year}");
    }
}
