//! How a [`StoreError`] becomes a [`tonic::Status`], and back on the client side.
//!
//! The client relies on the codes: `InvalidArgument` for a bad filter, cursor, stream or flow
//! file (retrying cannot help), `NotFound` for an unknown id, `Unavailable` when the database
//! is unreachable (retrying later may help).

use tonic::{Code, Status};

use crate::StoreError;

impl From<StoreError> for Status {
    fn from(error: StoreError) -> Status {
        let code = match &error {
            StoreError::Filter(_) | StoreError::Protocol(_) | StoreError::Import { .. } => {
                Code::InvalidArgument
            }
            StoreError::NotFound(_) => Code::NotFound,
            StoreError::Pool(_) | StoreError::Closed => Code::Unavailable,
            StoreError::Postgres(e) if e.is_closed() => Code::Unavailable,
            StoreError::Corrupt { .. } => Code::DataLoss,
            StoreError::Open { .. }
            | StoreError::Sqlite(_)
            | StoreError::Postgres(_)
            | StoreError::Export(_)
            | StoreError::Io { .. }
            | StoreError::Remote(_) => Code::Internal,
        };
        if let StoreError::Remote(status) = error {
            return status;
        }
        Status::new(code, error.to_string())
    }
}

impl From<Status> for StoreError {
    fn from(status: Status) -> StoreError {
        StoreError::Remote(status)
    }
}
