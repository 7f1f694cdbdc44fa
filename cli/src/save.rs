//! `-w FILE` (mitmproxy's `save_stream_file`) and `--set hardump=FILE`.
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
    /// Opens `spec` for writing: `+path` appends, `path` truncates.
    pub(crate) fn open(spec: &str) -> anyhow::Result<Self> {
        let (append, path) = match spec.strip_prefix('+') {
            Some(rest) => (true, crate::options::expand_tilde(rest)),
            None => (false, crate::options::expand_tilde(spec)),
        };
        let file = open_file(&path, append)?;
        let (sender, receiver) = channel::<Flow>();
        let writer = std::thread::Builder::new()
            .name("flow-writer".into())
            .spawn(move || {
                let mut writer = FlowWriter::new(BufWriter::new(file));
                for flow in receiver {
                    if let Err(e) = writer.add(&flow) {
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

fn open_file(path: &Path, append: bool) -> anyhow::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    OpenOptions::new()
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
