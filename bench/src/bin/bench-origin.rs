//! `bench-origin`: a fast origin server on 127.0.0.1 for benchmarks.
//!
//! Serves plain HTTP (HTTP/1.1 keep-alive, or HTTP/2 with prior knowledge) and HTTPS (HTTP/2
//! or HTTP/1.1 by ALPN) with a certificate from a throw-away CA, whose PEM it writes to
//! `--ca-out`. Routes: `/` answers 13 bytes (`Hello, world!`), `/size/N` answers N zero bytes
//! (at most 1 GiB, sent in 1 MiB frames from a static buffer), anything else 404.
//!
//! Prints `http=PORT https=PORT` on one line once both listeners are bound, then serves until
//! killed.

use std::convert::Infallible;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use anyhow::Context as _;
use bytes::Bytes;
use clap::Parser;
use flowtap_certs::testing::OriginCert;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const HELLO: &[u8] = b"Hello, world!";
const MAX_SIZE: u64 = 1 << 30;
static ZEROS: [u8; 1 << 20] = [0; 1 << 20];

/// A local origin server for benchmarks.
#[derive(Parser, Debug)]
#[command(name = "bench-origin", version)]
struct Args {
    /// Where to write the PEM certificate of the CA that signed the HTTPS certificate.
    #[arg(long)]
    ca_out: PathBuf,
    /// Plain HTTP port (0: any free port).
    #[arg(long, default_value_t = 0)]
    http_port: u16,
    /// HTTPS port (0: any free port).
    #[arg(long, default_value_t = 0)]
    https_port: u16,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let cert = OriginCert::new(&["127.0.0.1", "localhost"]);
    std::fs::write(&args.ca_out, cert.ca_pem())
        .with_context(|| format!("writing the CA to {}", args.ca_out.display()))?;
    let tls = TlsAcceptor::from(cert.server_config(&[b"h2".to_vec(), b"http/1.1".to_vec()]));
    let http = TcpListener::bind(("127.0.0.1", args.http_port))
        .await
        .context("binding the HTTP listener")?;
    let https = TcpListener::bind(("127.0.0.1", args.https_port))
        .await
        .context("binding the HTTPS listener")?;
    println!(
        "http={} https={}",
        http.local_addr()?.port(),
        https.local_addr()?.port()
    );
    tokio::spawn(accept_loop(http, None));
    accept_loop(https, Some(tls)).await;
    Ok(())
}

async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>) {
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                eprintln!("bench-origin: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve(tcp).await,
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(tcp).await {
                        serve(stream).await;
                    }
                }
            }
        });
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(stream: S) {
    let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
        Ok::<_, Infallible>(respond(req.uri().path()))
    });
    // Errors here are clients going away mid-request: nothing to do about them.
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

fn respond(path: &str) -> Response<StaticBody> {
    let body = if path == "/" {
        Some(StaticBody::new(HELLO, HELLO.len() as u64))
    } else {
        path.strip_prefix("/size/")
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|n| *n <= MAX_SIZE)
            .map(|n| StaticBody::new(&ZEROS, n))
    };
    match body {
        Some(body) => Response::new(body),
        None => {
            let mut response = Response::new(StaticBody::new(b"not found\n", 10));
            *response.status_mut() = StatusCode::NOT_FOUND;
            response
        }
    }
}

/// A body of `remaining` bytes cut from a static buffer, repeated as often as needed; its
/// exact size lets hyper send a Content-Length.
struct StaticBody {
    chunk: &'static [u8],
    remaining: u64,
}

impl StaticBody {
    fn new(chunk: &'static [u8], len: u64) -> StaticBody {
        StaticBody {
            chunk,
            remaining: len,
        }
    }
}

impl hyper::body::Body for StaticBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(self.chunk.len() as u64) as usize;
        self.remaining -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&self.chunk[..n])))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
