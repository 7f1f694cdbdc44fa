//! The listener: accepts client connections, at most `max_client_connections` at a time, and
//! runs each on its own task (`client`); at shutdown it stops accepting and lets in-flight
//! flows finish within a bound.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

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
use crate::sink::FlowSink;

/// A bound proxy, ready to serve.
pub struct Proxy {
    listener: Listener,
    shared: Arc<Shared>,
}

/// TCP for the HTTP modes and socks5; UDP for dns, reverse:dns and reverse:udp.
enum Listener {
    Tcp(TcpListener),
    Udp(Arc<UdpSocket>),
}

impl Proxy {
    /// Binds the listener and prepares upstream TLS. Nothing is served until [`Proxy::serve`].
    pub async fn bind(
        config: Config,
        ca: Arc<CertificateAuthority>,
        hooks: Arc<dyn Hooks>,
        sink: Arc<dyn FlowSink>,
    ) -> Result<Self, SetupError> {
        let bind_error = |source| SetupError::Bind {
            addr: config.listen.to_string(),
            source,
        };
        let listener = if config.mode.mode.is_udp() {
            Listener::Udp(Arc::new(
                UdpSocket::bind(config.listen).await.map_err(bind_error)?,
            ))
        } else {
            Listener::Tcp(TcpListener::bind(config.listen).await.map_err(bind_error)?)
        };
        let shared = Shared::new(config, ca, hooks, sink)?;
        Ok(Self {
            listener,
            shared: Arc::new(shared),
        })
    }

    /// The address the proxy listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        match &self.listener {
            Listener::Tcp(listener) => listener.local_addr(),
            Listener::Udp(socket) => socket.local_addr(),
        }
        .expect("a bound listener has an address")
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
        let listener = match self.listener {
            Listener::Tcp(listener) => listener,
            Listener::Udp(socket) => {
                let queries = tokio::spawn(crate::udp::serve(
                    socket,
                    self.shared.clone(),
                    Arc::new(self.shared.config.mode.clone()),
                    stop_rx,
                ));
                shutdown.await;
                let _ = stop_tx.send(true);
                let _ = queries.await;
                self.shared.sink.close();
                return;
            }
        };
        let cap = match self.shared.config.max_client_connections {
            0 => crate::limits::default_max_clients(crate::limits::descriptor_limit()),
            n => n.min(Semaphore::MAX_PERMITS),
        };
        let slots = Arc::new(Semaphore::new(cap));
        let mut at_cap = false;
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
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let shared = self.shared.clone();
                        let stop = stop_rx.clone();
                        tasks.spawn(async move {
                            client::serve(shared, stream, peer, stop).await;
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
        drop(listener);
        let _ = stop_tx.send(true);
        let grace = self.shared.config.shutdown_grace;
        let drained =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(
                "{} connections still open after {grace:?}; closing them",
                tasks.len()
            );
            tasks.shutdown().await;
        }
        self.shared.sink.close();
    }
}
