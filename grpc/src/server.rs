//! The server side: flags, the config they make, and how it is applied to a tonic server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tonic::transport::server::Server;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tower_layer::{Identity as NoLayer, Stack};

use crate::token::{TokenLayer, read_token};
use crate::{GrpcError, read_pem};

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who may call this gRPC server. Flatten into a server binary's arguments.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServerArgs {
    /// Serve TLS with this certificate chain (PEM; the server's certificate first).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM, PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require a client certificate signed by this CA (PEM): connections without one are
    /// refused at the TLS handshake. Needs --tls-cert. Health checks need one too.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Require `authorization: Bearer <token>` on every call, the token being this file's
    /// content with surrounding whitespace removed (refused with UNAUTHENTICATED otherwise).
    /// grpc.health.v1.Health needs no token.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Allow listening on a non-loopback address with neither client certificates nor a
    /// token (anyone who can reach the port can call it).
    #[arg(long)]
    pub insecure_listen: bool,
}

impl ServerArgs {
    /// Reads the files the flags name.
    pub fn config(&self) -> Result<ServerConfig, GrpcError> {
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(ServerTls {
                cert_pem: read_pem("--tls-cert", cert, &["CERTIFICATE"])?,
                key_pem: read_pem(
                    "--tls-key",
                    key,
                    &["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"],
                )?,
                client_ca_pem: self
                    .tls_client_ca
                    .as_deref()
                    .map(|ca| read_pem("--tls-client-ca", ca, &["CERTIFICATE"]))
                    .transpose()?,
            }),
            _ => None,
        };
        let token = self
            .token_file
            .as_deref()
            .map(|path| read_token("--token-file", path))
            .transpose()?;
        Ok(ServerConfig {
            tls,
            token,
            insecure_listen: self.insecure_listen,
        })
    }
}

/// A server's TLS material, in PEM.
#[derive(Clone)]
pub struct ServerTls {
    /// The certificate chain.
    pub cert_pem: Vec<u8>,
    /// Its private key.
    pub key_pem: Vec<u8>,
    /// The CA client certificates must be signed by; `None`: no client certificates.
    pub client_ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for ServerTls {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("client_certificates", &self.client_ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

/// Who may call a server: plain by default (for loopback), or TLS, client certificates and a
/// token in any combination.
#[derive(Clone, Default)]
pub struct ServerConfig {
    /// TLS, when set.
    pub tls: Option<ServerTls>,
    /// The bearer token every call but health checks must carry.
    pub token: Option<String>,
    /// Allow a non-loopback address without client certificates or token.
    pub insecure_listen: bool,
}

impl std::fmt::Debug for ServerConfig {
    /// Never prints the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("tls", &self.tls)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("insecure_listen", &self.insecure_listen)
            .finish()
    }
}

impl ServerConfig {
    /// Whether callers must prove who they are (a client certificate or a token).
    pub fn authenticates_clients(&self) -> bool {
        self.token.is_some() || self.tls.as_ref().is_some_and(|t| t.client_ca_pem.is_some())
    }

    /// Refuses a non-loopback `address` when callers are not authenticated, unless
    /// `insecure_listen`. Call it before binding.
    pub fn check_listen(&self, address: SocketAddr) -> Result<(), GrpcError> {
        if address.ip().is_loopback() || self.authenticates_clients() || self.insecure_listen {
            return Ok(());
        }
        Err(GrpcError::InsecureListen {
            address: address.to_string(),
        })
    }

    /// The token check, to put on a server with `Server::layer` (pass-through without a
    /// token). [`ServerConfig::apply`] does this already.
    pub fn token_layer(&self) -> TokenLayer {
        TokenLayer::new(self.token.as_deref())
    }

    /// Sets TLS (and client certificates) on `server` when configured. For servers on a
    /// socket that is not TCP, leave this out.
    pub fn apply_tls<L>(&self, server: Server<L>) -> Result<Server<L>, GrpcError> {
        let Some(tls) = &self.tls else {
            return Ok(server);
        };
        let mut config = ServerTlsConfig::new()
            .identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem))
            .timeout(HANDSHAKE_TIMEOUT);
        if let Some(ca) = &tls.client_ca_pem {
            config = config.client_ca_root(Certificate::from_pem(ca));
        }
        Ok(server.tls_config(config)?)
    }

    /// `server` with TLS applied and the token check layered on: what every flowtap gRPC
    /// server on TCP uses. Fails when the certificate or key cannot be used.
    pub fn apply(&self, server: Server) -> Result<Server<Stack<TokenLayer, NoLayer>>, GrpcError> {
        Ok(self.apply_tls(server)?.layer(self.token_layer()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unauthenticated_non_loopback_listens_are_refused() {
        let any: SocketAddr = "0.0.0.0:0".parse().unwrap();
        let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let plain = ServerConfig::default();
        assert!(plain.check_listen(loopback).is_ok());
        let error = plain.check_listen(any).unwrap_err().to_string();
        assert!(error.contains("--insecure-listen"), "{error}");
        let token = ServerConfig {
            token: Some("t".into()),
            ..ServerConfig::default()
        };
        assert!(token.check_listen(any).is_ok());
        let insecure = ServerConfig {
            insecure_listen: true,
            ..ServerConfig::default()
        };
        assert!(insecure.check_listen(any).is_ok());
    }
}
