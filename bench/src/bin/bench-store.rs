//! `bench-store`: ingest rate and filter-query time of the flow archive (issue 3), for SQLite
//! and, given a URL, PostgreSQL.
//!
//! ```text
//! bench-store                                    # SQLite only, in a temporary directory
//! bench-store --postgres postgres://postgres@127.0.0.1:5433/postgres
//! bench-store --flows 10000 --grpc-flows 5000    # a smaller run
//! ```
//!
//! For each backend, in a fresh database each time:
//! 1. `append`: `--flows` generated HTTP flows (1 KiB request and response bodies, realistic
//!    headers and connections, random UUIDs as ids like flowtap's) go in through
//!    [`Store::append`] in batches of `--batch`, one batch after another. Timed from the first
//!    batch to the last one stored.
//! 2. `query`: over the flows just stored, `--query` (by default `~d host & ~c 404`) is run
//!    `--query-runs` times through [`Store::query`], each time reading every match to the end
//!    of the stream. The number of matches is checked against the generator's count.
//! 3. `grpc`: the real path from proxy to store: a flow-store gRPC server
//!    ([`flow_store::server::serve`]) in this process on 127.0.0.1:0, fed by a [`StoreSink`]
//!    (its default batching), `--grpc-flows` flows pushed and timed until [`StoreSink::flush`]
//!    says all are stored. Pushing pauses while half the sink's queue may be taken (more flows
//!    pending than half the queue plus what its Append calls in flight hold), so flows travel
//!    through the queue and not through the spool (the sink spools when its queue is full: that
//!    path would measure the spool, not the store).
//!
//! CPU time per flow (`*_cpu_us`) is this process's user + system time over the step divided by
//! the flows: with PostgreSQL the server's own CPU is not in it.
//!
//! Output: `key=value` lines on stdout (the harness reads them), progress on stderr. Every
//! count must match (stored flows, query matches) or the run fails. The whole run is bounded by
//! `--max-seconds`; everything listens on and connects to loopback only. The PostgreSQL server
//! must be on loopback too: this tool creates a database per step and drops it afterwards.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use bytes::Bytes;
use clap::Parser;
use flowtap_flow_store as flow_store;
use flowtap_flow_store::{Config, SinkConfig, Store, StoreLocation, StoreSink};
use flowtap_proto::v1::{Address, Connection, Flow, Header, Request, Response};
use tokio_stream::StreamExt;

/// Most flows any one step may generate: bounds memory (about 3 KiB each) and time.
const MAX_FLOWS: usize = 1_000_000;

/// Flow-store ingest and filter-query benchmark over SQLite and PostgreSQL (loopback only).
#[derive(Parser, Debug)]
#[command(name = "bench-store", version)]
struct Args {
    /// Flows appended directly with Store::append (and then queried).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=MAX_FLOWS as u64))]
    flows: u64,
    /// Flows sent through StoreSink and a gRPC flow-store server (0: skip that step).
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(0..=MAX_FLOWS as u64))]
    grpc_flows: u64,
    /// Flows per Store::append call.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    batch: u64,
    /// The filter expression to time.
    #[arg(long, default_value = "~d host & ~c 404")]
    query: String,
    /// Times the query is run; the median is reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=50))]
    query_runs: u32,
    /// Size of each request and response body in bytes.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(0..=1_048_576))]
    body_bytes: u64,
    /// Flow ids in append order (a prefix and a counter) instead of random UUIDs. A store
    /// indexes flows by id: ids in order only ever add to the end of that index, random ones
    /// (what flowtap gives its flows) land anywhere in it.
    #[arg(long)]
    sequential_ids: bool,
    /// A PostgreSQL server (postgres://… on 127.0.0.1 or localhost) to measure as well.
    #[arg(long)]
    postgres: Option<String>,
    /// Skip SQLite (measure PostgreSQL only).
    #[arg(long)]
    no_sqlite: bool,
    /// Directory for the SQLite files and the sink's spool (default: a new temporary one,
    /// removed at the end).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// The whole run fails after this many seconds.
    #[arg(long, default_value_t = 900)]
    max_seconds: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(url) = &args.postgres {
        ensure!(
            url.contains("@127.0.0.1") || url.contains("@localhost") || url.contains("@[::1]"),
            "--postgres must name a server on loopback (127.0.0.1 or localhost)"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let deadline = Duration::from_secs(args.max_seconds);
    runtime.block_on(async {
        tokio::time::timeout(deadline, run(&args))
            .await
            .with_context(|| format!("bench-store did not finish within {deadline:?}"))?
    })
}

async fn run(args: &Args) -> anyhow::Result<()> {
    let temp;
    let dir = match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            dir.clone()
        }
        None => {
            temp = tempfile::Builder::new().prefix("bench-store.").tempdir()?;
            temp.path().to_owned()
        }
    };
    let generator = Generator::new(args.body_bytes as usize, args.sequential_ids);
    kv("flows", args.flows);
    kv("grpc_flows", args.grpc_flows);
    kv("batch", args.batch);
    kv("body_bytes", args.body_bytes);
    kv(
        "ids",
        if args.sequential_ids {
            "sequential"
        } else {
            "random"
        },
    );
    kv("query", &args.query);
    kv("query_runs", args.query_runs);

    if !args.no_sqlite {
        let mut next = 0;
        let mut location = || {
            next += 1;
            std::future::ready(Ok(StoreLocation::Sqlite(
                dir.join(format!("flows-{next}.db")),
            )))
        };
        bench_backend(args, "sqlite", &generator, &dir, &mut location).await?;
    }
    if let Some(url) = &args.postgres {
        let mut databases = Databases::new(url);
        let result = {
            let mut location = || {
                let created = databases.create();
                async move { Ok(StoreLocation::Postgres(created.await?)) }
            };
            bench_backend(args, "postgres", &generator, &dir, &mut location).await
        };
        databases.drop_all().await;
        result?;
    }
    Ok(())
}

/// One backend: append, query, then the gRPC path, each over a fresh database from `fresh`.
async fn bench_backend<F, Fut>(
    args: &Args,
    name: &str,
    generator: &Generator,
    dir: &Path,
    fresh: &mut F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<StoreLocation>>,
{
    // 1. Store::append in batches.
    let location = fresh().await?;
    let store = Store::open(&location, Config::default())
        .await
        .with_context(|| format!("opening {location}"))?;
    let (flows, expected_matches) = generator.flows("a", args.flows, &args.query);
    let batches: Vec<Vec<Flow>> = chunks(flows, args.batch as usize);
    progress(format_args!(
        "{name}: appending {} flows in batches of {}",
        args.flows, args.batch
    ));
    let cpu0 = cpu_seconds();
    let started = Instant::now();
    let mut stored = 0;
    for batch in batches {
        stored += store.append(batch).await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    ensure!(
        stored == args.flows,
        "{name}: {stored} of {} flows stored",
        args.flows
    );
    let total = count_all(&store).await?;
    ensure!(
        total == args.flows,
        "{name}: the store holds {total} flows, not {}",
        args.flows
    );
    kv(&format!("{name}_append_s"), format!("{elapsed:.3}"));
    kv(
        &format!("{name}_append_fps"),
        format!("{:.0}", args.flows as f64 / elapsed),
    );
    kv(
        &format!("{name}_append_cpu_us"),
        format!("{:.1}", cpu * 1e6 / args.flows as f64),
    );
    progress(format_args!(
        "{name}: {:.0} flows/s by Store::append",
        args.flows as f64 / elapsed
    ));

    // 2. The query over the stored flows.
    let mut times = Vec::new();
    for _ in 0..args.query_runs {
        let started = Instant::now();
        let mut items = store.query(&args.query, usize::MAX, "")?;
        let mut matches = 0u64;
        while let Some(item) = items.next().await {
            item?;
            matches += 1;
        }
        times.push(started.elapsed().as_secs_f64() * 1e3);
        ensure!(
            matches == expected_matches,
            "{name}: the query found {matches} flows, the generator made {expected_matches}"
        );
    }
    let first = times[0];
    times.sort_by(f64::total_cmp);
    kv(&format!("{name}_query_matches"), expected_matches);
    kv(&format!("{name}_query_over"), args.flows);
    kv(
        &format!("{name}_query_p50_ms"),
        format!("{:.1}", times[times.len() / 2]),
    );
    kv(&format!("{name}_query_min_ms"), format!("{:.1}", times[0]));
    kv(
        &format!("{name}_query_max_ms"),
        format!("{:.1}", times[times.len() - 1]),
    );
    kv(&format!("{name}_query_first_ms"), format!("{first:.1}"));
    progress(format_args!(
        "{name}: query {:?}: {expected_matches} matches over {} flows, p50 {:.1} ms",
        args.query,
        args.flows,
        times[times.len() / 2]
    ));
    drop(store);

    // 3. StoreSink → gRPC → flow-store server → Store.
    if args.grpc_flows == 0 {
        return Ok(());
    }
    let location = fresh().await?;
    let store = Store::open(&location, Config::default())
        .await
        .with_context(|| format!("opening {location}"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(flow_store::server::serve(listener, store.clone(), async {
        let _ = stopped.await;
    }));
    let spool = dir.join(format!("spool-{name}"));
    let config = SinkConfig::new(format!("http://{address}"), &spool);
    // Pending flows are queued or in an Append call: pause while the queue may be half full.
    let in_calls = config.calls_in_flight * config.batch_max_flows;
    let high_water = (config.queue_capacity / 2 + in_calls).min(config.queue_capacity) as u64;
    let sink = StoreSink::start(config)?;
    let (flows, _) = generator.flows("g", args.grpc_flows, &args.query);
    progress(format_args!(
        "{name}: sending {} flows through StoreSink and gRPC",
        args.grpc_flows
    ));
    let cpu0 = cpu_seconds();
    let started = Instant::now();
    let mut paused = 0u64;
    for flow in flows {
        while sink.pending() >= high_water {
            paused += 1;
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        sink.push(flow)?;
    }
    sink.flush().await;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    sink.close().await;
    let total = count_all(&store).await?;
    let _ = stop.send(());
    server.await??;
    ensure!(
        total == args.grpc_flows,
        "{name}: {total} of {} flows arrived through gRPC",
        args.grpc_flows
    );
    kv(&format!("{name}_grpc_s"), format!("{elapsed:.3}"));
    kv(
        &format!("{name}_grpc_fps"),
        format!("{:.0}", args.grpc_flows as f64 / elapsed),
    );
    kv(
        &format!("{name}_grpc_cpu_us"),
        format!("{:.1}", cpu * 1e6 / args.grpc_flows as f64),
    );
    kv(&format!("{name}_grpc_pauses"), paused);
    progress(format_args!(
        "{name}: {:.0} flows/s through StoreSink and gRPC",
        args.grpc_flows as f64 / elapsed
    ));
    Ok(())
}

/// Every stored flow, counted through the query path (not timed).
async fn count_all(store: &Store) -> anyhow::Result<u64> {
    Ok(store.list("", |_| {}).await?)
}

/// User + system CPU time of this process so far (all threads), from /proc/self/stat; 0 where
/// that cannot be read. Assumes the usual 100 clock ticks per second.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn chunks(flows: Vec<Flow>, size: usize) -> Vec<Vec<Flow>> {
    let mut batches = Vec::with_capacity(flows.len().div_ceil(size));
    let mut flows = flows.into_iter().peekable();
    while flows.peek().is_some() {
        batches.push(flows.by_ref().take(size).collect());
    }
    batches
}

fn kv(key: &str, value: impl std::fmt::Display) {
    println!("{key}={value}");
}

fn progress(message: std::fmt::Arguments<'_>) {
    eprintln!("bench-store: {message}");
}

/// Fresh databases on one PostgreSQL server, dropped at the end.
struct Databases {
    base: String,
    created: Vec<String>,
}

impl Databases {
    fn new(base: &str) -> Databases {
        Databases {
            base: base.to_owned(),
            created: Vec::new(),
        }
    }

    /// Creates a database and returns the URL of it.
    fn create(&mut self) -> impl Future<Output = anyhow::Result<String>> + use<> {
        let name = format!(
            "flowtap_bench_{}_{}",
            std::process::id(),
            self.created.len()
        );
        self.created.push(name.clone());
        let base = self.base.clone();
        async move {
            admin(&base, &format!("CREATE DATABASE {name}")).await?;
            let (prefix, _) = base
                .split_once('?')
                .map_or(base.as_str(), |(url, _)| url)
                .rsplit_once('/')
                .context("a PostgreSQL URL with a database name")?;
            Ok(format!("{prefix}/{name}"))
        }
    }

    async fn drop_all(&self) {
        for name in &self.created {
            if let Err(error) = admin(
                &self.base,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            )
            .await
            {
                progress(format_args!("dropping database {name}: {error:#}"));
            }
        }
    }
}

async fn admin(url: &str, statement: &str) -> anyhow::Result<()> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .context("connecting to PostgreSQL")?;
    let connection = tokio::spawn(connection);
    client
        .batch_execute(statement)
        .await
        .with_context(|| statement.to_owned())?;
    drop(client);
    let _ = connection.await;
    Ok(())
}

/// Makes realistic HTTP flows, the same ones on every run.
///
/// Hosts: 24 names, 6 of which contain "host" (so `~d host` matches about a quarter of the
/// flows). Status codes: 200 (75 %), 201, 204, 301, 304, 404 (8 %), 500. Methods POST, PUT and
/// PATCH, each with a JSON request body and a JSON response body of `body_bytes`. Headers as a
/// browser or API client and a typical server send them; TLS client and server connections.
struct Generator {
    request_bodies: Vec<Bytes>,
    response_bodies: Vec<Bytes>,
    sequential_ids: bool,
}

const HOSTS: [&str; 24] = [
    "api.example.com",
    "www.example.com",
    "cdn.example.net",
    "static.shop.example",
    "auth.example.org",
    "telemetry.vendor.example",
    "localhost",
    "img.example.net",
    "graphql.example.com",
    "hosting.example.org",
    "payments.example.com",
    "search.example.com",
    "ghost.blog.example",
    "fonts.example.net",
    "ads.tracker.example",
    "host-17.internal.example",
    "mail.example.org",
    "news.example.com",
    "vhost.example.net",
    "ws.example.com",
    "update.vendor.example",
    "db-host.example.internal",
    "metrics.example.com",
    "files.example.org",
];

const STATUSES: [(u32, &str, u32); 7] = [
    // (code, reason, weight out of 100)
    (200, "OK", 75),
    (201, "Created", 4),
    (204, "No Content", 3),
    (301, "Moved Permanently", 2),
    (304, "Not Modified", 5),
    (404, "Not Found", 8),
    (500, "Internal Server Error", 3),
];

impl Generator {
    fn new(body_bytes: usize, sequential_ids: bool) -> Generator {
        let body = |kind: &str, n: usize| {
            let mut text = format!("{{\"kind\":\"{kind}\",\"n\":{n},\"items\":[");
            let mut i = 0;
            while text.len() + 40 < body_bytes {
                text.push_str(&format!(
                    "{{\"id\":{},\"v\":\"{:016x}\"}},",
                    i,
                    mix(n * 997 + i)
                ));
                i += 1;
            }
            text.push_str("{}]}");
            let mut bytes = text.into_bytes();
            bytes.resize(body_bytes, b' ');
            Bytes::from(bytes)
        };
        Generator {
            request_bodies: (0..64).map(|n| body("request", n)).collect(),
            response_bodies: (0..64).map(|n| body("response", n)).collect(),
            sequential_ids,
        }
    }

    /// The id of flow `i`: a random-looking UUID v4, as flowtap gives its flows, or with
    /// `--sequential-ids` one that starts with `prefix` and the counter (ids in append order).
    fn id(&self, prefix: &str, i: usize) -> String {
        let seed = prefix
            .bytes()
            .fold(0usize, |seed, b| seed * 131 + usize::from(b));
        let (r, q) = (mix(i), mix(i ^ (seed << 40) ^ 0x5555_5555));
        if self.sequential_ids {
            return format!(
                "{prefix}{:07x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                i,
                r & 0xffff,
                (r >> 16) & 0xfff,
                (r >> 28) & 0xfff,
                r >> 16
            );
        }
        format!(
            "{:08x}-{:04x}-4{:03x}-{:x}{:03x}-{:012x}",
            q >> 32,
            (q >> 16) & 0xffff,
            q & 0xfff,
            8 + (r & 3),
            (r >> 2) & 0xfff,
            r >> 16
        )
    }

    /// `count` flows with ids starting with `prefix`, and how many of them `query` matches.
    /// Only `~d host & ~c 404` (the default) is counted here; for another query the count is
    /// taken from the generated flows by the store's own filter.
    fn flows(&self, prefix: &str, count: u64, query: &str) -> (Vec<Flow>, u64) {
        let flows: Vec<Flow> = (0..count as usize).map(|i| self.flow(prefix, i)).collect();
        let filter =
            flow_store::FlowFilter::parse(query).expect("the query parses (checked by the store)");
        let matches = flows.iter().filter(|f| filter.matches(f)).count() as u64;
        (flows, matches)
    }

    fn flow(&self, prefix: &str, i: usize) -> Flow {
        let r = mix(i);
        let host = HOSTS[(r % HOSTS.len() as u64) as usize];
        let mut pick = (r >> 8) % 100;
        let mut status = STATUSES[0];
        for candidate in STATUSES {
            if pick < u64::from(candidate.2) {
                status = candidate;
                break;
            }
            pick -= u64::from(candidate.2);
        }
        let method = ["POST", "POST", "PUT", "PATCH"][((r >> 16) % 4) as usize];
        let path = format!(
            "/v2/items/{}/details?session={:x}&page={}",
            (r >> 20) % 100_000,
            r >> 24,
            i % 50
        );
        let request_body = self.request_bodies[i % self.request_bodies.len()].clone();
        let response_body = self.response_bodies[(i / 3) % self.response_bodies.len()].clone();
        let t = 1_700_000_000.0 + i as f64 * 0.01;
        let id = self.id(prefix, i);
        let client_port = 40_000 + (i % 20_000) as u32;
        Flow {
            id,
            r#type: "http".into(),
            error: None,
            client_conn: Some(connection(
                &format!("c{i}"),
                "10.0.0.7",
                client_port,
                host,
                false,
            )),
            server_conn: Some(connection(
                &format!("s{i}"),
                "93.184.216.34",
                443,
                host,
                true,
            )),
            intercepted: false,
            is_replay: None,
            marked: String::new(),
            metadata: None,
            comment: String::new(),
            timestamp_created: t,
            backup: None,
            live: false,
            request: Some(Request {
                http_version: Bytes::from_static(b"HTTP/1.1"),
                headers: vec![
                    header("Host", host),
                    header(
                        "User-Agent",
                        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
                    ),
                    header("Accept", "application/json, text/plain, */*"),
                    header("Accept-Language", "en-US,en;q=0.5"),
                    header("Accept-Encoding", "gzip, deflate, br"),
                    header("Content-Type", "application/json"),
                    header("Content-Length", &request_body.len().to_string()),
                    header(
                        "Authorization",
                        &format!("Bearer tok-{:032x}", u128::from(r)),
                    ),
                    header(
                        "Cookie",
                        &format!("sid={:016x}; theme=dark; consent=1", r.rotate_left(17)),
                    ),
                    header("Connection", "keep-alive"),
                ],
                content: Some(request_body),
                trailers: None,
                timestamp_start: t + 0.001,
                timestamp_end: Some(t + 0.002),
                host: host.into(),
                port: 443,
                method: Bytes::from_static(method.as_bytes()),
                scheme: Bytes::from_static(b"https"),
                authority: Bytes::new(),
                path: Bytes::from(path.into_bytes()),
                stream: flowtap_proto::v1::StreamMode::Buffer.into(),
            }),
            response: Some(Response {
                http_version: Bytes::from_static(b"HTTP/1.1"),
                headers: vec![
                    header("Date", "Tue, 14 Nov 2023 22:13:20 GMT"),
                    header("Content-Type", "application/json; charset=utf-8"),
                    header("Content-Length", &response_body.len().to_string()),
                    header("Cache-Control", "private, max-age=0, no-cache"),
                    header("Server", "nginx/1.25.3"),
                    header("ETag", &format!("W/\"{:x}\"", r >> 3)),
                    header("Vary", "Accept-Encoding"),
                    header("Strict-Transport-Security", "max-age=31536000"),
                ],
                content: Some(response_body),
                trailers: None,
                timestamp_start: t + 0.030,
                timestamp_end: Some(t + 0.031),
                status_code: status.0,
                reason: Bytes::from_static(status.1.as_bytes()),
                stream: flowtap_proto::v1::StreamMode::Buffer.into(),
            }),
            websocket: None,
            messages: vec![],
            dns_request: None,
            dns_response: None,
        }
    }
}

fn header(name: &str, value: &str) -> Header {
    Header {
        name: Bytes::copy_from_slice(name.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
    }
}

fn connection(id: &str, peer: &str, port: u32, sni: &str, server: bool) -> Connection {
    let address = |host: &str, port| {
        Some(Address {
            host: host.into(),
            port,
        })
    };
    Connection {
        id: id.into(),
        peername: address(peer, port),
        sockname: address("127.0.0.1", 8080),
        transport_protocol: "tcp".into(),
        error: None,
        tls: true,
        certificate_list: Vec::new(),
        alpn: Some(Bytes::from_static(b"http/1.1")),
        alpn_offers: vec![Bytes::from_static(b"h2"), Bytes::from_static(b"http/1.1")],
        cipher: Some("TLS_AES_128_GCM_SHA256".into()),
        cipher_list: Vec::new(),
        tls_version: Some("TLSv1.3".into()),
        sni: Some(sni.into()),
        timestamp_start: Some(1_700_000_000.0),
        timestamp_end: None,
        timestamp_tls_setup: Some(1_700_000_000.004),
        mitmcert: None,
        proxy_mode: "regular".into(),
        address: if server { address(sni, 443) } else { None },
        timestamp_tcp_setup: server.then_some(1_700_000_000.002),
        via: None,
        client_hello: Bytes::new(),
        socks5_auth: None,
    }
}

/// A fixed 64-bit mix (splitmix64) of a counter: the flows are the same on every run.
fn mix(i: usize) -> u64 {
    let mut z = (i as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49eb_133b_111b);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_query_matches_some_flows_but_not_most() {
        let generator = Generator::new(1024, false);
        let (flows, matches) = generator.flows("t", 10_000, "~d host & ~c 404");
        assert_eq!(flows.len(), 10_000);
        assert!((100..1000).contains(&matches), "{matches} matches");
        let body = flows[0].request.as_ref().unwrap().content.as_ref().unwrap();
        assert_eq!(body.len(), 1024);
        let ids: std::collections::HashSet<_> = flows.iter().map(|f| &f.id).collect();
        assert_eq!(ids.len(), flows.len(), "ids are unique");
        let id = flows[0].id.as_bytes();
        assert_eq!((id.len(), id[8], id[14]), (36, b'-', b'4'), "a UUID v4");
    }

    #[test]
    fn batches_keep_every_flow() {
        let generator = Generator::new(16, true);
        let (flows, _) = generator.flows("t", 2500, "");
        let batches = chunks(flows, 1000);
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            [1000, 1000, 500]
        );
    }
}
