//! The proxy's errors: setting up, HTTP/1 framing, and reaching servers. How an error becomes
//! an answer to the client is decided in `respond`.

/// A failure to start the proxy.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The listen address could not be bound.
    #[error("binding proxy listener on {addr}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The configuration has no listener.
    #[error("no listener: give at least one --mode")]
    NoListener,
    /// An `--ignore-hosts` / `--allow-hosts` / `--tcp-hosts` pattern is not a valid regex.
    #[error("invalid host pattern {pattern:?}")]
    HostPattern {
        /// The pattern given.
        pattern: String,
        /// Why it failed.
        source: regex::Error,
    },
    /// A built-in addon's option does not parse (the message is mitmdump's).
    #[error(transparent)]
    Builtin(#[from] crate::builtins::BuiltinError),
    /// The upstream TLS configuration could not be built.
    #[error("upstream TLS: {0}")]
    UpstreamTls(String),
}

/// An HTTP/1 framing or syntax error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Http1Error {
    #[error("malformed HTTP message: {0}")]
    Malformed(String),
    #[error("HTTP head too large")]
    HeadTooLarge,
    #[error("connection closed in the middle of a message")]
    Truncated,
    #[error("server closed the connection before responding")]
    ClosedBeforeResponse,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Why a flow could not reach its server or get a response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("cannot connect to {host}:{port}: {reason}")]
    ConnectFailed {
        host: String,
        port: u32,
        reason: String,
    },
    #[error("TLS handshake with {host} failed: {reason}")]
    Tls { host: String, reason: String },
    #[error("{0}")]
    Http(#[from] Http1Error),
    /// The client's side of a streamed request body broke (bad framing, or the client left).
    #[error("reading the request body from the client: {0}")]
    ClientBody(Http1Error),
    /// A script's stream callable could not filter the body.
    #[error("{0}")]
    Stream(#[from] crate::stream::FilterFailed),
}
