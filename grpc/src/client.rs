//! The client side: flags, the config they make, endpoints for an address, and the channel
//! that carries the token.
//!
//! Addresses: `https://host:port` is TLS; `http://host:port` is plain (even when a CA is
//! given: the scheme says); a bare `host:port` is TLS when `--grpc-ca` or `--grpc-cert` is
//! given and plain otherwise. TLS trusts `--grpc-ca` when given, else the public web roots.

mod dial;

use std::path::PathBuf;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Endpoint;

use self::dial::TlsConnector;

use crate::token::{BearerToken, read_token};
use crate::{GrpcError, read_pem};

/// A channel to a flowtap gRPC server that adds the bearer token (when configured) to every
/// call. Generated clients take it like a `tonic::transport::Channel`.
pub type Channel = InterceptedService<tonic::transport::Channel, BearerToken>;

/// How to reach flowtap's gRPC servers (script-host workers, flow-store). Flatten into a
/// client binary's arguments.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClientArgs {
    /// Trust this CA (PEM) for the servers' certificates, and use TLS for bare HOST:PORT
    /// addresses (https:// addresses always use TLS; http:// never).
    #[arg(long, value_name = "FILE", global = true)]
    pub grpc_ca: Option<PathBuf>,
    /// Present this client certificate (PEM chain) to servers that require one.
    #[arg(long, value_name = "FILE", requires = "grpc_key", global = true)]
    pub grpc_cert: Option<PathBuf>,
    /// The private key of --grpc-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "grpc_cert", global = true)]
    pub grpc_key: Option<PathBuf>,
    /// Send `authorization: Bearer <token>` with every call, the token being this file's
    /// content with surrounding whitespace removed.
    #[arg(long, value_name = "FILE", global = true)]
    pub grpc_token_file: Option<PathBuf>,
    /// The name the servers' certificates must carry, when it is not the host dialed (for
    /// example when dialing pod addresses behind a headless Service).
    #[arg(long, value_name = "NAME", global = true)]
    pub grpc_server_name: Option<String>,
}

impl ClientArgs {
    /// Reads the files the flags name.
    pub fn config(&self) -> Result<ClientConfig, GrpcError> {
        let certificate = ["CERTIFICATE"];
        let key = ["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"];
        let identity = match (&self.grpc_cert, &self.grpc_key) {
            (Some(cert), Some(key_path)) => Some((
                read_pem("--grpc-cert", cert, &certificate)?,
                read_pem("--grpc-key", key_path, &key)?,
            )),
            _ => None,
        };
        Ok(ClientConfig {
            ca_pem: self
                .grpc_ca
                .as_deref()
                .map(|ca| read_pem("--grpc-ca", ca, &certificate))
                .transpose()?,
            identity,
            token: self
                .grpc_token_file
                .as_deref()
                .map(|path| read_token("--grpc-token-file", path))
                .transpose()?,
            server_name: self.grpc_server_name.clone(),
        })
    }
}

/// What a client presents and trusts. The default dials plain gRPC without a token.
#[derive(Clone, Default)]
pub struct ClientConfig {
    /// The CA to trust (PEM); `None`: the public web roots.
    pub ca_pem: Option<Vec<u8>>,
    /// The client certificate chain and key (PEM).
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// The bearer token to send.
    pub token: Option<String>,
    /// The name to verify in server certificates instead of the host dialed.
    pub server_name: Option<String>,
}

impl std::fmt::Debug for ClientConfig {
    /// Never prints the key or the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("ca", &self.ca_pem.is_some())
            .field("client_certificate", &self.identity.is_some())
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl ClientConfig {
    /// The URI for `address` (`http://h:p`, `https://h:p` or `h:p`) and whether it is TLS.
    pub fn uri(&self, address: &str) -> (String, bool) {
        if address.starts_with("https://") {
            (address.to_owned(), true)
        } else if address.starts_with("http://") {
            (address.to_owned(), false)
        } else if self.ca_pem.is_some() || self.identity.is_some() {
            (format!("https://{address}"), true)
        } else {
            (format!("http://{address}"), false)
        }
    }

    /// How to dial `address` ([the module](self) says when it is TLS). Callers set their own
    /// endpoint options with [`Dial::map_endpoint`], then connect.
    pub fn dial(&self, address: &str) -> Result<Dial, GrpcError> {
        let (uri, tls) = self.uri(address);
        let address_error = |reason: String| GrpcError::Address {
            address: address.to_owned(),
            reason,
        };
        // The connector does TLS itself; the endpoint only needs host and port.
        let plain_uri = match uri.strip_prefix("https://") {
            Some(rest) => format!("http://{rest}"),
            None => uri,
        };
        let endpoint =
            Endpoint::from_shared(plain_uri).map_err(|e| address_error(e.to_string()))?;
        if !tls && self.token.is_some() && !is_loopback(&endpoint) {
            tracing::warn!("sending the gRPC token to {address} without TLS");
        }
        let tls = match tls {
            true => Some(TlsConnector {
                config: Arc::new(self.rustls_config()?),
                server_name: self
                    .server_name
                    .as_ref()
                    .map(|name| ServerName::try_from(name.clone()))
                    .transpose()
                    .map_err(|_| address_error("--grpc-server-name is not a valid name".into()))?,
            }),
            false => None,
        };
        Ok(Dial {
            endpoint,
            tls,
            bearer: self.bearer(),
        })
    }

    fn rustls_config(&self) -> Result<rustls::ClientConfig, GrpcError> {
        let invalid = |what: &'static str, reason: String| GrpcError::Pem { what, reason };
        let mut roots = RootCertStore::empty();
        match &self.ca_pem {
            Some(ca) => {
                for cert in CertificateDer::pem_slice_iter(ca) {
                    let cert = cert.map_err(|e| invalid("--grpc-ca", e.to_string()))?;
                    roots
                        .add(cert)
                        .map_err(|e| invalid("--grpc-ca", e.to_string()))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("TLS", e.to_string()))?
        .with_root_certificates(roots);
        let mut config = match &self.identity {
            Some((cert, key)) => {
                let chain = CertificateDer::pem_slice_iter(cert)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| invalid("--grpc-cert", e.to_string()))?;
                let key = PrivateKeyDer::from_pem_slice(key)
                    .map_err(|e| invalid("--grpc-key", e.to_string()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| invalid("--grpc-cert", e.to_string()))?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }

    /// `channel` with the bearer token added to every call (for channels dialed otherwise,
    /// such as over a unix socket).
    pub fn channel(&self, channel: tonic::transport::Channel) -> Channel {
        InterceptedService::new(channel, self.bearer())
    }

    /// The interceptor that adds the token.
    pub fn bearer(&self) -> BearerToken {
        // ClientArgs::config only accepts tokens that are valid metadata values; one set by
        // hand that is not is dropped and the server says the token is missing.
        BearerToken::new(self.token.as_deref()).unwrap_or_default()
    }

    /// Connects to `address` with the endpoint's defaults. A failure is described in words by
    /// [`crate::describe`] (expired certificate, unknown CA, refused client certificate).
    pub async fn connect(&self, address: &str) -> Result<Channel, ConnectError> {
        self.dial(address)?
            .connect()
            .await
            .map_err(|e| ConnectError::Connect {
                address: address.to_owned(),
                reason: crate::describe(&e),
            })
    }
}

/// Whether the endpoint's host is a loopback address or `localhost`.
fn is_loopback(endpoint: &Endpoint) -> bool {
    let host = endpoint.uri().host().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// An address ready to dial: the endpoint (for the caller's options), TLS, and the token.
pub struct Dial {
    endpoint: Endpoint,
    tls: Option<TlsConnector>,
    bearer: BearerToken,
}

impl Dial {
    /// Changes the endpoint's options (windows, timeouts, `tcp_nodelay` for plain TCP).
    pub fn map_endpoint(self, f: impl FnOnce(Endpoint) -> Endpoint) -> Dial {
        Dial {
            endpoint: f(self.endpoint),
            ..self
        }
    }

    /// Connects now. Pass a failure to [`crate::describe`] for the words.
    pub async fn connect(self) -> Result<Channel, tonic::transport::Error> {
        let channel = match self.tls {
            Some(tls) => self.endpoint.connect_with_connector(tls).await?,
            None => self.endpoint.connect().await?,
        };
        Ok(InterceptedService::new(channel, self.bearer))
    }

    /// A channel that connects at its first call (and again after losing the connection).
    pub fn connect_lazy(self) -> Channel {
        let channel = match self.tls {
            Some(tls) => self.endpoint.connect_with_connector_lazy(tls),
            None => self.endpoint.connect_lazy(),
        };
        InterceptedService::new(channel, self.bearer)
    }
}

/// A channel could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The settings or the address are unusable.
    #[error(transparent)]
    Setup(#[from] GrpcError),
    /// The server could not be reached or the TLS handshake failed.
    #[error("connecting to {address}: {reason}")]
    Connect {
        /// The address dialed.
        address: String,
        /// What happened, in words.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_decides_and_a_bare_address_follows_the_ca() {
        let plain = ClientConfig::default();
        assert_eq!(plain.uri("h:1"), ("http://h:1".into(), false));
        assert_eq!(plain.uri("https://h:1"), ("https://h:1".into(), true));
        let with_ca = ClientConfig {
            ca_pem: Some(b"x".to_vec()),
            ..ClientConfig::default()
        };
        assert_eq!(with_ca.uri("h:1"), ("https://h:1".into(), true));
        assert_eq!(with_ca.uri("http://h:1"), ("http://h:1".into(), false));
    }
}
