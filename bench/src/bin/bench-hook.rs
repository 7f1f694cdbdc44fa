//! `bench-hook`: the hook round trip core → worker → core (issue 4), through the core's real
//! script client ([`ScriptClient`]) and a real `script-host` worker running a real script.
//!
//! ```text
//! bench-hook --script bench/scripts/noop_response.py
//! bench-hook --script bench/scripts/add_header.py --calls 5000
//! bench-hook --script x.py --worker target/release/script-host
//! bench-hook --script x.py --script-host 127.0.0.1:PORT [--grpc-ca ca.pem --grpc-cert c.pem --grpc-key c.key]
//! ```
//!
//! One `response` call at a time (the latency of a lone call, not throughput): the time from
//! [`Hooks::call`] to its return, which includes what the core does per call (copying and
//! encoding the flow, applying the reply). The flow is shaped like a small `curl` exchange
//! (request and response headers, a short body, both connections). `--warmup` calls are not
//! counted. Output: `key=value` lines on stdout (`p50_us`, `p90_us`, `p99_us`, `mean_us`,
//! `calls`, `changed`), progress on stderr. The worker listens on 127.0.0.1 only.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use bytes::Bytes;
use clap::Parser;
use flowtap_proto::v1::{Address, Connection, Flow, Header, Hook, Request, Response};
use flowtap_proxy_core::Hooks;
use flowtap_script_client::{Config, ScriptClient};

/// Round-trip time of one hook call through the script client and a script-host worker.
#[derive(Parser, Debug)]
#[command(name = "bench-hook", version)]
struct Args {
    /// The script the worker runs (it should implement `response`).
    #[arg(long)]
    script: PathBuf,
    /// Calls measured.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    calls: u64,
    /// Calls made first and not measured.
    #[arg(long, default_value_t = 500)]
    warmup: u64,
    /// The script-host binary (by default the one next to this executable).
    #[arg(long)]
    worker: Option<PathBuf>,
    /// Bound on the whole run, in seconds.
    #[arg(long, default_value_t = 120)]
    max_seconds: u64,
    /// A worker started elsewhere (`script-host --listen ADDR -s SCRIPT`), over TCP, instead of
    /// one spawned on a unix socket; `--grpc-*` say how to reach it (TLS, token).
    #[arg(long = "script-host", value_name = "ADDR")]
    script_host: Option<String>,
    #[command(flatten)]
    grpc: flowtap_grpc::ClientArgs,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Runtime::new().context("starting tokio")?;
    let max = Duration::from_secs(args.max_seconds);
    runtime.block_on(async {
        tokio::time::timeout(max, run(args))
            .await
            .context("the run took longer than --max-seconds")?
    })
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = Config {
        scripts: vec![args.script.to_string_lossy().into_owned()],
        binary: args.worker.clone(),
        addresses: args.script_host.iter().cloned().collect(),
        grpc: args.grpc.config().context("reading the --grpc-* files")?,
        ..Config::default()
    };
    let (client, scripts) = ScriptClient::start(config)
        .await
        .context("starting the script worker")?;
    ensure!(
        client.interest().of(Hook::Response).awaited,
        "{} does not implement an awaited response hook ({} scripts loaded)",
        args.script.display(),
        scripts.len()
    );
    let template = curl_flow();
    let mut changed = 0u64;
    let mut samples = Vec::with_capacity(args.calls as usize);
    for i in 0..args.warmup + args.calls {
        let mut flow = template.clone();
        flow.id = format!("bench-{i}");
        let start = Instant::now();
        client.call(Hook::Response, &mut flow).await;
        let took = start.elapsed();
        if i >= args.warmup {
            samples.push(took);
            if flow.response != template.response {
                changed += 1;
            }
        }
    }
    client.shutdown().await;
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    let us = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1e6);
    eprintln!(
        "{}: {} calls, p50 {} µs, p99 {} µs",
        args.script.display(),
        samples.len(),
        us(at(0.5)),
        us(at(0.99))
    );
    println!("calls={}", samples.len());
    println!("changed={changed}");
    println!("p50_us={}", us(at(0.5)));
    println!("p90_us={}", us(at(0.9)));
    println!("p99_us={}", us(at(0.99)));
    println!("mean_us={}", us(mean));
    Ok(())
}

fn header(name: &str, value: &str) -> Header {
    Header {
        name: Bytes::copy_from_slice(name.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
    }
}

fn connection(id: &str, host: &str, port: u32) -> Connection {
    Connection {
        id: id.into(),
        peername: Some(Address {
            host: host.into(),
            port,
        }),
        address: Some(Address {
            host: host.into(),
            port,
        }),
        timestamp_start: Some(1_795_238_398.4),
        ..Connection::default()
    }
}

/// A flow like `curl http://127.0.0.1:8080/` gives, after its response arrived.
fn curl_flow() -> Flow {
    Flow {
        id: String::new(),
        r#type: "http".into(),
        live: true,
        timestamp_created: 1_795_238_398.5,
        client_conn: Some(connection(
            "7c1f3d2e-0a4b-4c5d-8e9f-0123456789ab",
            "127.0.0.1",
            50000,
        )),
        server_conn: Some(connection(
            "8d2e4f3a-1b5c-4d6e-9fa0-123456789abc",
            "127.0.0.1",
            8080,
        )),
        request: Some(Request {
            http_version: Bytes::from_static(b"HTTP/1.1"),
            headers: vec![
                header("Host", "127.0.0.1:8080"),
                header("User-Agent", "curl/7.88.1"),
                header("Accept", "*/*"),
            ],
            content: Some(Bytes::new()),
            timestamp_start: 1_795_238_398.5,
            timestamp_end: Some(1_795_238_398.6),
            host: "127.0.0.1".into(),
            port: 8080,
            method: Bytes::from_static(b"GET"),
            scheme: Bytes::from_static(b"http"),
            authority: Bytes::new(),
            path: Bytes::from_static(b"/"),
            ..Request::default()
        }),
        response: Some(Response {
            http_version: Bytes::from_static(b"HTTP/1.1"),
            headers: vec![
                header("Content-Type", "text/plain"),
                header("Content-Length", "13"),
                header("Date", "Sat, 21 Nov 2026 09:00:00 GMT"),
            ],
            content: Some(Bytes::from_static(b"hello, world\n")),
            timestamp_start: 1_795_238_399.0,
            timestamp_end: Some(1_795_238_399.1),
            status_code: 200,
            reason: Bytes::from_static(b"OK"),
            ..Response::default()
        }),
        ..Flow::default()
    }
}
