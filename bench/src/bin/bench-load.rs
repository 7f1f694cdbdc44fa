//! `bench-load`: N concurrent HTTP/1.1 connections against one URL on loopback, directly or
//! through a proxy, for a bounded duration or request count.
//!
//! ```text
//! bench-load -c 50 -d 5 http://127.0.0.1:8000/                     # direct
//! bench-load -c 50 -d 5 -x 127.0.0.1:8080 http://127.0.0.1:8000/   # absolute-form via a proxy
//! bench-load -c 50 -d 5 -x 127.0.0.1:8080 --cacert ca.pem https://127.0.0.1:8443/  # CONNECT+TLS
//! bench-load -c 8 -d 5 --new-conn -x 127.0.0.1:8080 --cacert ca.pem https://127.0.0.1:8443/
//! ```
//!
//! Each connection runs one request at a time (no pipelining). Measuring starts after the
//! warm-up, once every connection has completed a request (waiting at most 30 s more), so
//! connection set-up is not part of a keep-alive measurement. Requests outside the window
//! are not measured; a failed request is counted as an error and its connection
//! replaced. Latency is measured per request from before the write (before the connect with
//! `--new-conn`) to the last body byte.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use flowtap_bench::client::{ClientError, Connection, Target};
use flowtap_bench::histogram::Histogram;
use tokio::sync::watch;

/// Longest measured run; the harness never needs more.
const MAX_DURATION_SECS: f64 = 300.0;
/// Longest wait after the warm-up for every connection to complete a request.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// A request that takes longer than this is counted as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A bounded HTTP/1.1 load generator for loopback origins and proxies.
#[derive(Parser, Debug)]
#[command(name = "bench-load", version)]
struct Args {
    /// http://HOST:PORT/PATH or https://…; HOST must be loopback.
    url: String,
    /// Concurrent connections.
    #[arg(short = 'c', long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    connections: u32,
    /// Seconds to measure, after the warm-up.
    #[arg(short = 'd', long, default_value_t = 5.0)]
    duration: f64,
    /// Stop after this many measured requests (or at the end of the duration).
    #[arg(short = 'n', long)]
    requests: Option<u64>,
    /// Seconds of unmeasured load before measuring (longer if a connection has not yet
    /// completed a request).
    #[arg(short = 'w', long, default_value_t = 1.0)]
    warmup: f64,
    /// HTTP proxy (HOST:PORT on loopback): absolute-form for http://, CONNECT for https://.
    #[arg(short = 'x', long)]
    proxy: Option<String>,
    /// CA certificates (PEM) to trust for https://.
    #[arg(long)]
    cacert: Option<PathBuf>,
    /// A new connection (and full TLS handshake) per request: measures connections/s.
    #[arg(long)]
    new_conn: bool,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Output: a summary for people, or one key=value per line for scripts.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Human,
    Kv,
}

/// What all workers share: the measurement window (set once the warm-up is over), the
/// request budget, and how many connections have completed a request.
struct Plan {
    window: OnceLock<(Instant, Instant)>,
    budget: Option<u64>,
    issued: AtomicU64,
    ready: AtomicU64,
}

impl Plan {
    /// Whether a request that ran from `begin` to `end` falls inside the window.
    fn measures(&self, begin: Instant, end: Instant) -> bool {
        self.window
            .get()
            .is_some_and(|(from, until)| begin >= *from && end <= *until)
    }
}

/// One worker's results.
#[derive(Default)]
struct Tally {
    latency: Histogram,
    ok: u64,
    errors: u64,
    warmup_ok: u64,
    body_bytes: u64,
    last_end: Option<Instant>,
    first_error: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !(0.1..=MAX_DURATION_SECS).contains(&args.duration) {
        bail!("--duration must be between 0.1 and {MAX_DURATION_SECS} seconds");
    }
    if !(0.0..=60.0).contains(&args.warmup) {
        bail!("--warmup must be between 0 and 60 seconds");
    }
    let target = Target::new(
        &args.url,
        args.proxy.as_deref(),
        args.cacert.as_deref(),
        args.new_conn,
    )
    .context("setting up the target")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let tally = runtime.block_on(run(&args, Arc::new(target)))?;
    report(&args, &tally);
    Ok(())
}

async fn run(args: &Args, target: Arc<Target>) -> anyhow::Result<(Tally, Duration)> {
    let plan = Arc::new(Plan {
        window: OnceLock::new(),
        budget: args.requests,
        issued: AtomicU64::new(0),
        ready: AtomicU64::new(0),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let workers: Vec<_> = (0..args.connections)
        .map(|_| tokio::spawn(worker(target.clone(), plan.clone(), stop_rx.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    // A keep-alive benchmark measures requests on open connections: wait (boundedly) until
    // every connection has completed a request, so that a slow proxy's handshakes fall in
    // the warm-up rather than in the measurement.
    let deadline = Instant::now() + READY_TIMEOUT;
    while plan.ready.load(Ordering::Relaxed) < u64::from(args.connections)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let from = Instant::now();
    let until = from + Duration::from_secs_f64(args.duration);
    plan.window
        .set((from, until))
        .expect("only this function sets the window");
    tokio::time::sleep_until(until.into()).await;
    let _ = stop_tx.send(true);
    let mut total = Tally::default();
    for w in workers {
        let t = w.await.context("a worker panicked")?;
        total.latency.merge(&t.latency);
        total.ok += t.ok;
        total.errors += t.errors;
        total.warmup_ok += t.warmup_ok;
        total.body_bytes += t.body_bytes;
        total.last_end = total.last_end.max(t.last_end);
        total.first_error = total.first_error.or(t.first_error);
    }
    // With a request budget that ran out early, the run ended at the last response.
    let end = match (args.requests, total.last_end) {
        (Some(_), Some(last)) if last < until => last,
        _ => until,
    };
    Ok((total, end.saturating_duration_since(from)))
}

async fn worker(target: Arc<Target>, plan: Arc<Plan>, mut stop: watch::Receiver<bool>) -> Tally {
    let mut tally = Tally::default();
    let mut conn: Option<Connection> = None;
    let mut ready = false;
    loop {
        if let Some(budget) = plan.budget
            && plan.window.get().is_some()
            && plan.issued.fetch_add(1, Ordering::Relaxed) >= budget
        {
            break;
        }
        let begin = Instant::now();
        let result = tokio::select! {
            r = tokio::time::timeout(REQUEST_TIMEOUT, one_request(&target, &mut conn)) => r,
            _ = stop.wait_for(|s| *s) => break,
        };
        let end = Instant::now();
        let measured = plan.measures(begin, end);
        if matches!(result, Ok(Ok(_))) && !std::mem::replace(&mut ready, true) {
            plan.ready.fetch_add(1, Ordering::Relaxed);
        }
        match result {
            Ok(Ok(bytes)) if measured => {
                tally.latency.record(end - begin);
                tally.ok += 1;
                tally.body_bytes += bytes;
                tally.last_end = Some(end);
            }
            Ok(Ok(_)) => tally.warmup_ok += 1,
            Ok(Err(e)) => failed(&mut tally, &mut conn, e.to_string(), measured).await,
            Err(_) => failed(&mut tally, &mut conn, "timed out".into(), measured).await,
        }
    }
    tally
}

/// One request on `conn`, opening a connection first when there is none.
async fn one_request(target: &Target, conn: &mut Option<Connection>) -> Result<u64, ClientError> {
    let c = match conn {
        Some(c) => c,
        None => conn.insert(target.connect().await?),
    };
    let exchange = c.exchange(target).await?;
    if !exchange.reusable || target.new_connection_per_request() {
        *conn = None;
    }
    Ok(exchange.body_bytes)
}

async fn failed(tally: &mut Tally, conn: &mut Option<Connection>, error: String, measured: bool) {
    *conn = None;
    if measured {
        tally.errors += 1;
    }
    tally.first_error.get_or_insert(error);
    // A refused connection fails at once; do not spin on it.
    tokio::time::sleep(Duration::from_millis(20)).await;
}

/// User + system CPU time of this process so far, in clock ticks (fields 14 and 15 of
/// `/proc/self/stat`), for the harness's CPU-per-request figures. `None` off Linux.
fn process_cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is parenthesised and may hold spaces.
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 2..)?
        .split_whitespace()
        .collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn report(args: &Args, (tally, elapsed): &(Tally, Duration)) {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let rps = tally.ok as f64 / secs;
    let us = |q: f64| tally.latency.quantile(q).as_secs_f64() * 1e6;
    match args.format {
        Format::Kv => {
            println!("requests={}", tally.ok);
            println!("errors={}", tally.errors);
            println!("warmup_requests={}", tally.warmup_ok);
            println!("elapsed_s={secs:.3}");
            println!("rps={rps:.1}");
            println!("p50_us={:.1}", us(0.5));
            println!("p90_us={:.1}", us(0.9));
            println!("p99_us={:.1}", us(0.99));
            println!("max_us={:.1}", tally.latency.max().as_secs_f64() * 1e6);
            println!("body_bytes={}", tally.body_bytes);
            if let Some(ticks) = process_cpu_ticks() {
                println!("cpu_ticks={ticks}");
            }
            println!(
                "first_error={}",
                tally
                    .first_error
                    .as_deref()
                    .unwrap_or("")
                    .replace('\n', " ")
            );
        }
        Format::Human => {
            println!(
                "{} c={} {:.1}s: {} requests, {:.0} req/s, {} errors",
                args.url, args.connections, secs, tally.ok, rps, tally.errors
            );
            println!(
                "latency p50 {:.0} us, p90 {:.0} us, p99 {:.0} us, max {:.0} us; {:.1} MB/s body",
                us(0.5),
                us(0.9),
                us(0.99),
                tally.latency.max().as_secs_f64() * 1e6,
                tally.body_bytes as f64 / secs / 1e6
            );
            if let Some(e) = &tally.first_error {
                println!("first error: {e}");
            }
        }
    }
}
