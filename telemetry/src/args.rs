//! The flags every binary flattens into its command line.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs as _};

use crate::{LogFormat, MetricsServer, TelemetryError};

/// `--metrics HOST:PORT`: serve `/metrics`, `/healthz` and `/readyz` there.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics (/metrics) and probes (/healthz, /readyz) on HOST:PORT; a port
    /// alone means 127.0.0.1:PORT, port 0 picks a free one.
    #[arg(long = "metrics", value_name = "HOST:PORT", value_parser = parse_address)]
    pub metrics: Option<SocketAddr>,
}

impl MetricsArgs {
    /// Starts the metrics server if `--metrics` was given.
    pub fn start(&self) -> Result<Option<MetricsServer>, TelemetryError> {
        self.metrics.map(MetricsServer::start).transpose()
    }
}

/// `--log-format text|json`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct LogArgs {
    /// Log lines as text, or as one JSON object per line (timestamp, level, message, fields).
    #[arg(long = "log-format", value_enum, default_value_t, global = true)]
    pub log_format: LogFormat,
}

/// `HOST:PORT`, `[V6]:PORT`, or a port alone (loopback).
fn parse_address(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(address);
    }
    text.to_socket_addrs()
        .map_err(|e| format!("{text:?} is not HOST:PORT or a port: {e}"))?
        .next()
        .ok_or_else(|| format!("{text:?} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_alone_is_loopback_and_an_address_is_taken_as_given() {
        assert_eq!(parse_address("9464").unwrap().to_string(), "127.0.0.1:9464");
        assert_eq!(
            parse_address("0.0.0.0:9464").unwrap().to_string(),
            "0.0.0.0:9464"
        );
        assert_eq!(parse_address("[::1]:0").unwrap().to_string(), "[::1]:0");
        assert!(parse_address("no port").is_err());
    }
}
