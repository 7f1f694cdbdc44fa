//! The bearer token: read from a file, checked by servers in constant time ([`TokenLayer`]),
//! added by clients ([`BearerToken`]).
//!
//! The token travels as `authorization: Bearer <token>` metadata. `grpc.health.v1.Health` is
//! exempt on servers: Kubernetes probes carry no token (they still need a client certificate
//! when the server requires one, as that is checked at the handshake).

use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::{Either, Ready, ready};
use subtle::ConstantTimeEq as _;
use tonic::Status;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;

use crate::GrpcError;

/// The path prefix of the health service, which needs no token.
const HEALTH_PATH: &str = "/grpc.health.v1.Health/";

/// Reads a token file: its content with surrounding whitespace removed. `what` names the flag.
pub fn read_token(what: &'static str, path: &Path) -> Result<String, GrpcError> {
    let bytes = crate::read(what, path)?;
    let invalid = |reason: &str| GrpcError::Invalid {
        what,
        path: path.to_owned(),
        reason: reason.into(),
    };
    let text = String::from_utf8(bytes).map_err(|_| invalid("the token is not UTF-8"))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(invalid("the file is empty"));
    }
    // Metadata values are visible ASCII; a token that is not could never be sent.
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            "the token must be printable ASCII without spaces inside",
        ));
    }
    Ok(token.to_owned())
}

/// A tower layer for `tonic::transport::Server::layer` that refuses calls without the right
/// token with `unauthenticated` (the message says whether it was missing or wrong). Built
/// without a token it lets every call through.
#[derive(Clone, Debug, Default)]
pub struct TokenLayer {
    expected: Option<Arc<[u8]>>,
}

impl TokenLayer {
    /// Requires `token` when it is `Some`.
    pub fn new(token: Option<&str>) -> TokenLayer {
        TokenLayer {
            expected: token.map(|t| Arc::from(t.as_bytes())),
        }
    }

    /// Whether a request with this `authorization` header and path may go on.
    fn check(&self, path: &str, authorization: Option<&http::HeaderValue>) -> Result<(), Status> {
        let Some(expected) = &self.expected else {
            return Ok(());
        };
        if path.starts_with(HEALTH_PATH) {
            return Ok(());
        }
        let Some(value) = authorization else {
            return Err(Status::unauthenticated(
                "missing token: this server requires `authorization: Bearer <token>` \
                 (flowtap: --grpc-token-file)",
            ));
        };
        let presented = value
            .as_bytes()
            .strip_prefix(b"Bearer ")
            .ok_or_else(|| Status::unauthenticated("malformed authorization: expected Bearer"))?;
        // Constant time over the content; only the length can be learned by timing.
        if bool::from(presented.ct_eq(expected)) {
            Ok(())
        } else {
            Err(Status::unauthenticated(
                "wrong token: the bearer token does not match this server's --token-file",
            ))
        }
    }
}

impl<S> tower_layer::Layer<S> for TokenLayer {
    type Service = TokenService<S>;

    fn layer(&self, inner: S) -> TokenService<S> {
        TokenService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`TokenLayer`] wraps around a server's routes.
#[derive(Clone, Debug)]
pub struct TokenService<S> {
    inner: S,
    layer: TokenLayer,
}

impl<S, B, R> tower_service::Service<http::Request<B>> for TokenService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
    R: Default,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = Either<Ready<Result<http::Response<R>, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let checked = self.layer.check(
            request.uri().path(),
            request.headers().get(http::header::AUTHORIZATION),
        );
        match checked {
            Ok(()) => Either::Right(self.inner.call(request)),
            Err(status) => Either::Left(ready(Ok(status.into_http()))),
        }
    }
}

/// A client interceptor that adds `authorization: Bearer <token>` to every call; without a
/// token it adds nothing.
#[derive(Clone, Debug, Default)]
pub struct BearerToken {
    value: Option<AsciiMetadataValue>,
}

impl BearerToken {
    /// Sends `token` when it is `Some`. Fails if the token cannot be a metadata value
    /// ([`read_token`] only returns tokens that can).
    pub fn new(
        token: Option<&str>,
    ) -> Result<BearerToken, tonic::metadata::errors::InvalidMetadataValue> {
        let value = token
            .map(|t| MetadataValue::try_from(format!("Bearer {t}")))
            .transpose()?;
        Ok(BearerToken { value })
    }
}

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(value) = &self.value {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(value: &str) -> http::HeaderValue {
        http::HeaderValue::from_str(value).unwrap()
    }

    #[test]
    fn a_layer_without_token_lets_everything_through() {
        assert!(TokenLayer::new(None).check("/x.Y/Z", None).is_ok());
    }

    #[test]
    fn the_token_is_required_and_compared() {
        let layer = TokenLayer::new(Some("s3cret"));
        let missing = layer.check("/x.Y/Z", None).unwrap_err();
        assert_eq!(missing.code(), tonic::Code::Unauthenticated);
        assert!(
            missing.message().starts_with("missing token"),
            "{missing:?}"
        );
        let wrong = layer
            .check("/x.Y/Z", Some(&header("Bearer s3creT")))
            .unwrap_err();
        assert!(wrong.message().starts_with("wrong token"), "{wrong:?}");
        let short = layer
            .check("/x.Y/Z", Some(&header("Bearer s3")))
            .unwrap_err();
        assert!(short.message().starts_with("wrong token"), "{short:?}");
        assert!(
            layer
                .check("/x.Y/Z", Some(&header("Bearer s3cret")))
                .is_ok()
        );
    }

    #[test]
    fn health_needs_no_token() {
        let layer = TokenLayer::new(Some("s3cret"));
        assert!(layer.check("/grpc.health.v1.Health/Check", None).is_ok());
        assert!(layer.check("/grpc.health.v1.HealthX/Check", None).is_err());
    }

    #[test]
    fn token_files_are_trimmed_and_empty_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  abc123\n").unwrap();
        assert_eq!(read_token("--token-file", &path).unwrap(), "abc123");
        std::fs::write(&path, "\n").unwrap();
        let error = read_token("--token-file", &path).unwrap_err().to_string();
        assert!(error.contains("empty"), "{error}");
    }
}
