//! The errors of the flow archive. How each becomes a gRPC status is decided in [`crate::status`].

/// Everything that can go wrong opening, writing or reading the archive.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or its schema created.
    #[error("opening flow store {location}: {message}")]
    Open {
        /// The path or URL that was opened (passwords removed).
        location: String,
        /// What failed.
        message: String,
    },
    /// SQLite reported an error.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL reported an error.
    #[error("postgres: {}", postgres_message(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// No PostgreSQL connection could be taken from the pool.
    #[error("postgres pool: {0}")]
    Pool(String),
    /// A stored flow head could not be decoded (a damaged database).
    #[error("stored flow {id} is damaged: {source}")]
    Corrupt {
        /// The flow id.
        id: String,
        /// The decoding error.
        source: prost::DecodeError,
    },
    /// The filter expression does not parse.
    #[error("invalid filter expression: {0}")]
    Filter(String),
    /// No flow has this id.
    #[error("no flow with id {0}")]
    NotFound(String),
    /// An Append stream broke the head / body / end order.
    #[error("malformed append stream: {0}")]
    Protocol(String),
    /// A flow file or HAR could not be read. The flows before `offset` were imported.
    #[error(
        "reading flow file at byte {offset}: {message} ({imported} flows before it were imported)"
    )]
    Import {
        /// Byte offset of the bad record in the file.
        offset: u64,
        /// What is wrong there.
        message: String,
        /// How many flows were stored before the error.
        imported: u64,
    },
    /// A flow could not be written as a flow file or HAR.
    #[error("exporting flows: {0}")]
    Export(String),
    /// A local file (spool, export target) could not be read or written.
    #[error("{action}: {source}")]
    Io {
        /// What was being done, e.g. "writing spool file /x".
        action: String,
        /// The error.
        source: std::io::Error,
    },
    /// A remote flow-store answered with an error.
    #[error("flow-store: {}", flowtap_grpc::describe_status(.0))]
    Remote(tonic::Status),
    /// The background writer of the store has stopped.
    #[error("the flow store is shut down")]
    Closed,
}

impl StoreError {
    pub(crate) fn io(action: impl Into<String>, source: std::io::Error) -> Self {
        StoreError::Io {
            action: action.into(),
            source,
        }
    }
}

impl From<rusqlite::types::FromSqlError> for StoreError {
    fn from(error: rusqlite::types::FromSqlError) -> Self {
        StoreError::Sqlite(error.into())
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        StoreError::Pool(pool_message(&error))
    }
}

/// The server's own message when there is one: tokio-postgres displays only "db error".
pub(crate) fn postgres_message(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    message
}

/// A pool error, with the PostgreSQL message inside it.
pub(crate) fn pool_message(error: &deadpool_postgres::PoolError) -> String {
    match error {
        deadpool_postgres::PoolError::Backend(error) => postgres_message(error),
        other => other.to_string(),
    }
}
