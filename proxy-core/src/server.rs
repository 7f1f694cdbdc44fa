//! The listeners, one per mode: accept client connections, at most `max_client_connections` at
//! a time over all of them, and run each on its own task (`client`) with its listener's mode; at
//! shutdown they stop accepting and let in-flight flows finish within a bound.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;

use flowtap_certs::CertificateAuthority;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::client;
use crate::config::Config;
use crate::context::Shared;
use crate::control::ProxyControl;
use crate::error::SetupError;
use crate::hooks::Hooks;
use crate::mode::ModeSpec;
use crate::sink::FlowSink;

/// A bound proxy, ready to serve.
pub struct Proxy {
    sockets: Vec<(Socket, Arc<ModeSpec>)>,
    shared: Arc<Shared>,
}

/// TCP for the HTTP modes and socks5; UDP for dns, reverse:dns and reverse:udp (with TCP on
/// the same port for the DNS modes).
enum Socket {
    Tcp(TcpListener),
    Udp(Arc<UdpSocket>, Option<TcpListener>),
}

impl Socket {
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            Socket::Tcp(listener) => listener.local_addr(),
            Socket::Udp(socket, _) => socket.local_addr(),
        }
    }
}

impl Proxy {
    /// Binds every listener of `config.listeners` and prepares upstream TLS. Nothing is served
    /// until [`Proxy::serve`].
    pub async fn bind(
        config: Config,
        ca: Arc<CertificateAuthority>,
        hooks: Arc<dyn Hooks>,
        sink: Arc<dyn FlowSink>,
    ) -> Result<Self, SetupError> {
        let mut sockets = Vec::with_capacity(config.listeners.len());
        for listener in &config.listeners {
            let addr = listener.addr;
            let bind_error = |source| SetupError::Bind {
                addr: format!("{addr} (--mode {})", listener.spec),
                source,
            };
            let socket = if listener.spec.mode.is_udp() {
                let (udp, tcp) = crate::udp::bind(addr, listener.spec.mode.is_dns())
                    .await
                    .map_err(bind_error)?;
                Socket::Udp(udp, tcp)
            } else {
                Socket::Tcp(TcpListener::bind(addr).await.map_err(bind_error)?)
            };
            sockets.push((socket, Arc::new(listener.spec.clone())));
        }
        if sockets.is_empty() {
            return Err(SetupError::NoListener);
        }
        let shared = Shared::new(config, ca, hooks, sink)?;
        Ok(Self {
            sockets,
            shared: Arc::new(shared),
        })
    }

    /// The address of the first listener (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addrs()[0].1
    }

    /// Every listener's mode and address, in the order of `config.listeners`.
    pub fn local_addrs(&self) -> Vec<(ModeSpec, SocketAddr)> {
        self.sockets
            .iter()
            .map(|(socket, spec)| {
                let addr = socket
                    .local_addr()
                    .expect("a bound listener has an address");
                (ModeSpec::clone(spec), addr)
            })
            .collect()
    }

    /// Serves clients until `shutdown` completes (or a script asks for shutdown); then stops
    /// accepting, lets each connection finish the flow it is in (within `shutdown_grace`) and
    /// returns. The scripts are attached (their `running` hooks fire) before the first accept.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let control = Arc::new(ProxyControl {
            shutdown: Default::default(),
            shared: self.shared.clone(),
        });
        self.shared.hooks.attach(control.clone());
        let shutdown = async {
            tokio::select! {
                _ = shutdown => {}
                _ = control.shutdown.notified() => tracing::info!("a script asked for shutdown"),
            }
        };
        tokio::pin!(shutdown);
        let mut listeners = Vec::new();
        let mut datagrams = JoinSet::new();
        for (socket, spec) in self.sockets {
            match socket {
                Socket::Tcp(listener) => listeners.push((listener, spec)),
                Socket::Udp(socket, tcp) => {
                    listeners.extend(tcp.map(|tcp| (tcp, spec.clone())));
                    datagrams.spawn(crate::udp::serve(
                        socket,
                        self.shared.clone(),
                        spec,
                        stop_rx.clone(),
                    ));
                }
            }
        }
        let cap = match self.shared.config.max_client_connections {
            0 => crate::limits::default_max_clients(crate::limits::descriptor_limit()),
            n => n.min(Semaphore::MAX_PERMITS),
        };
        let slots = Arc::new(Semaphore::new(cap));
        let mut at_cap = false;
        let mut next_listener = 0;
        loop {
            // At the cap, wait for a connection to close before accepting the next one: the
            // kernel's backlog holds new clients meanwhile.
            let slot = match slots.clone().try_acquire_owned() {
                Ok(slot) => {
                    at_cap = false;
                    slot
                }
                Err(_) => {
                    if !at_cap {
                        at_cap = true;
                        tracing::warn!(
                            "{cap} client connections open (max_client_connections): new connections wait until one closes"
                        );
                    }
                    tokio::select! {
                        slot = slots.clone().acquire_owned() => match slot {
                            Ok(slot) => slot,
                            Err(_) => break,
                        },
                        Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
                        _ = &mut shutdown => break,
                    }
                }
            };
            tokio::select! {
                (accepted, spec) = accept(&listeners, &mut next_listener) => match accepted {
                    Ok((stream, peer)) => {
                        let shared = self.shared.clone();
                        let stop = stop_rx.clone();
                        tasks.spawn(async move {
                            client::serve(shared, spec, stream, peer, stop).await;
                            drop(slot);
                        });
                    }
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = &mut shutdown => break,
            }
        }
        drop(listeners);
        let _ = stop_tx.send(true);
        let grace = self.shared.config.shutdown_grace;
        let drained = tokio::time::timeout(grace, async {
            while tasks.join_next().await.is_some() {}
            while datagrams.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "{} connections still open after {grace:?}; closing them",
                tasks.len()
            );
            tasks.shutdown().await;
            datagrams.shutdown().await;
        }
        self.shared.sink.close();
    }
}

/// The next connection any TCP listener accepts, with that listener's mode. Never ready when
/// there is none (a proxy of UDP listeners only). The listeners are polled in turn from
/// `*next`, which moves past the one that accepted, so a busy listener cannot starve the others.
async fn accept(
    listeners: &[(TcpListener, Arc<ModeSpec>)],
    next: &mut usize,
) -> (
    std::io::Result<(tokio::net::TcpStream, SocketAddr)>,
    Arc<ModeSpec>,
) {
    std::future::poll_fn(|cx| {
        let n = listeners.len();
        for i in (0..n).map(|k| (*next + k) % n) {
            let (listener, spec) = &listeners[i];
            if let Poll::Ready(accepted) = listener.poll_accept(cx) {
                *next = (i + 1) % n;
                return Poll::Ready((accepted, spec.clone()));
            }
        }
        Poll::Pending
    })
    .await
}
