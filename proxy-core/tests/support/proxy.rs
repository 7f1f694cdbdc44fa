//! The proxy under test, served in-process on 127.0.0.1:0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use flowtap_certs::CertificateAuthority;
use flowtap_proto::v1::Flow;
use flowtap_proxy_core::{Config, FlowSink, Hooks, NoHooks, Proxy};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A sink that keeps every finished flow. By default it does not ask for bodies, so the proxy
/// streams them as it does for the `flowtap` command at the default flow detail; one that
/// asks for them is like `-w` (WebSocket and TCP messages are then recorded).
#[derive(Default)]
pub struct RecordingSink {
    flows: Mutex<Vec<Flow>>,
    bodies: bool,
}

impl RecordingSink {
    /// The flows finished so far, in order.
    pub fn flows(&self) -> Vec<Flow> {
        self.flows.lock().expect("sink lock").clone()
    }

    /// The flows once at least `n` finished: the proxy records a flow just after the client
    /// got its response, so a test that saw the response may look before that (at most 10 s).
    pub async fn wait_flows(&self, n: usize) -> Vec<Flow> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let flows = self.flows();
            if flows.len() >= n || tokio::time::Instant::now() >= deadline {
                return flows;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

impl FlowSink for RecordingSink {
    fn needs_bodies(&self) -> bool {
        self.bodies
    }

    fn flow_finished(&self, flow: &Flow) {
        self.flows.lock().expect("sink lock").push(flow.clone());
    }
}

/// A running proxy with its own CA in a temporary confdir.
pub struct TestProxy {
    pub addr: SocketAddr,
    pub confdir: tempfile::TempDir,
    pub ca: Arc<CertificateAuthority>,
    pub sink: Arc<RecordingSink>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestProxy {
    /// Starts a proxy with `config` (its listen address is replaced by 127.0.0.1:0).
    pub async fn start(config: Config) -> TestProxy {
        TestProxy::start_with(config, Arc::new(NoHooks::default()), false).await
    }

    /// Starts a proxy with `config`, `hooks`, and a sink that asks for bodies if `bodies`.
    pub async fn start_with(config: Config, hooks: Arc<dyn Hooks>, bodies: bool) -> TestProxy {
        let confdir = tempfile::tempdir().expect("confdir");
        let ca =
            Arc::new(CertificateAuthority::load_or_create(confdir.path()).expect("create the CA"));
        let sink = Arc::new(RecordingSink {
            flows: Mutex::default(),
            bodies,
        });
        let config = Config {
            listeners: vec![flowtap_proxy_core::Listener::regular(SocketAddr::from((
                [127, 0, 0, 1],
                0,
            )))],
            ..config
        };
        let proxy = Proxy::bind(config, ca.clone(), hooks, sink.clone())
            .await
            .expect("bind the proxy");
        let addr = proxy.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(proxy.serve(async move {
            let _ = stopped.await;
        }));
        TestProxy {
            addr,
            confdir,
            ca,
            sink,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A proxy with default settings that trusts `origin_ca` for its servers.
    pub async fn trusting(origin_ca: &std::path::Path) -> TestProxy {
        TestProxy::start(Config {
            upstream_trusted_ca: vec![origin_ca.to_path_buf()],
            ..Config::default()
        })
        .await
    }

    /// The proxy URL for curl's `-x`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The CA certificate clients are told to trust, as the proxy wrote it.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.confdir.path().join("flowtap-ca-cert.pem")
    }

    /// Stops the proxy and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("the proxy task does not panic");
        }
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
