//! `flowtap`: the intercepting proxy in one command, with mitmdump's flags.
//!
//! `flowtap [-p PORT] [-s script.py] [--set name=value] ...` starts the proxy on
//! 127.0.0.1:8080, creates the CA in the confdir on first start (`~/.flowtap`), prints one line
//! per flow and stops gracefully on SIGINT or SIGTERM.
//!
//! Modules: `options` (`--set` parsing), `flags` (mitmdump's flags for its options), `dump`
//! (the per-flow output), `save` (`-w`, `hardump`), `readfile` (`-r`: saved flows through the
//! scripts).

mod archive;
mod dump;
mod flags;
mod flows;
mod options;
mod readfile;
mod replay;
mod save;
mod serverplayback;
mod tls;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use flowtap_certs::CertificateAuthority;
use flowtap_flow::Filter;
use flowtap_proto::v1::Flow;
use flowtap_proxy_core::{
    ClientReplay, Config, CoreControl, FlowSink, Hooks, NoHooks, Proxy, Sinks,
};
use flowtap_script_client::{self as scripts, FailurePolicy, ScriptClient, ScriptsError};

use crate::options::{Options, expand_tilde};

/// An intercepting HTTP/HTTPS proxy scripted with mitmproxy-compatible Python scripts.
#[derive(Parser, Debug)]
#[command(
    name = "flowtap",
    version,
    about,
    subcommand_precedence_over_arg = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Proxy service port.
    #[arg(short = 'p', long = "listen-port")]
    listen_port: Option<u16>,
    /// Address to bind the proxy to.
    #[arg(long = "listen-host")]
    listen_host: Option<String>,
    /// Set an option: --set name=value (repeatable). Unknown names are offered to scripts.
    #[arg(long = "set", value_name = "option[=value]")]
    set: Vec<String>,
    /// Quiet: only errors, no flow output.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Verbose: debug log and flow headers.
    #[arg(short = 'v', long)]
    verbose: bool,
    /// Flow output detail: 0 nothing, 1 one line, 2 headers, 3 bodies cut, 4 whole bodies.
    #[arg(long = "flow-detail", value_parser = clap::value_parser!(u8).range(0..=4))]
    flow_detail: Option<u8>,
    /// Do not verify server certificates.
    #[arg(short = 'k', long = "ssl-insecure")]
    ssl_insecure: bool,
    /// Do not intercept hosts matching this regex (host:port); relay them untouched.
    #[arg(long = "ignore-hosts", value_name = "REGEX")]
    ignore_hosts: Vec<String>,
    /// Intercept only hosts matching this regex (host:port).
    #[arg(long = "allow-hosts", value_name = "REGEX")]
    allow_hosts: Vec<String>,
    /// Treat tunnels to hosts matching this regex (host:port) as raw TCP flows.
    #[arg(long = "tcp-hosts", value_name = "REGEX")]
    tcp_hosts: Vec<String>,
    /// The proxy mode, as mitmproxy spells it: regular, reverse:URL; SPEC@PORT or
    /// SPEC@HOST:PORT to listen elsewhere.
    #[arg(short = 'm', long = "mode", value_name = "SPEC")]
    mode: Vec<String>,
    /// mitmdump's flags for its built-in addons (`-M`, `-H`, `-B`, `--anticache`, ...).
    #[command(flatten)]
    builtins: flags::BuiltinFlags,
    /// Use an existing mitmproxy CA instead of flowtap's (default ~/.mitmproxy/mitmproxy-ca.pem).
    #[arg(long = "use-mitmproxy-ca", value_name = "PATH", num_args = 0..=1,
          default_missing_value = "~/.mitmproxy/mitmproxy-ca.pem")]
    use_mitmproxy_ca: Option<String>,
    /// Stream flows to this file as they finish (`+PATH` appends).
    #[arg(short = 'w', long = "save-stream-file", value_name = "PATH")]
    save_stream_file: Option<String>,
    /// Read flows from this file (`-` for stdin) and run them through the scripts.
    #[arg(short = 'r', long = "rfile", value_name = "PATH")]
    rfile: Option<PathBuf>,
    /// Replay the client requests from a saved file (`is_replay = "request"`), then exit.
    #[arg(short = 'C', long = "client-replay", value_name = "PATH")]
    client_replay: Vec<PathBuf>,
    /// Answer matching requests with the responses recorded in this file.
    #[arg(short = 'S', long = "server-replay", value_name = "PATH")]
    server_replay: Vec<PathBuf>,
    /// Answer matching requests with the responses of the stored flows matching this filter
    /// (from the local store, or `--store-addr`).
    #[arg(long = "server-replay-store", value_name = "FILTER")]
    server_replay_store: Option<String>,
    /// Do not start the proxy server (with `-r`: process the file and exit).
    #[arg(short = 'n', long = "no-server")]
    no_server: bool,
    /// Load a script (repeatable; a chain in load order). `"x.py arg1"` passes arguments to
    /// old-API scripts.
    #[arg(short = 's', long = "scripts", value_name = "PATH")]
    scripts: Vec<String>,
    /// Use script workers started elsewhere (`script-host --listen ADDR`); repeatable. A
    /// HOST:PORT name means every address it resolves to, resolved again every 2 s; workers
    /// that are down are joined when they come up. TLS when --grpc-ca or --grpc-cert is given
    /// (or with https://).
    #[arg(long = "script-host", value_name = "ADDR")]
    script_host: Vec<String>,
    /// Archive finished flows in this store, opened in process: a SQLite file or
    /// postgres://... (default CONFDIR/flows.db, which `flowtap flows` reads).
    #[arg(long = "store", id = "archive_store", value_name = "STORE", num_args = 0..=1, default_missing_value = "")]
    store: Option<String>,
    /// Send finished flows to this flow-store: http://HOST:PORT, https://HOST:PORT, or
    /// HOST:PORT (TLS when --grpc-ca or --grpc-cert is given).
    #[arg(long = "store-addr", value_name = "URL")]
    store_addr: Option<String>,
    /// TLS and token towards script-host workers (--script-host) and flow-store.
    #[command(flatten)]
    grpc: flowtap_grpc::ClientArgs,
    /// A filter expression: limits the flows shown, saved (`-w`) and read (`-r`).
    #[arg(value_name = "FILTER")]
    filter: Vec<String>,
    /// `--metrics HOST:PORT`: Prometheus metrics and probes (ready once the proxy listens).
    #[command(flatten)]
    metrics: flowtap_telemetry::MetricsArgs,
    #[command(flatten)]
    log: flowtap_telemetry::LogArgs,
}

/// Subcommands over the flow archive.
#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Stored flows: list, show, export, import, delete.
    Flows(flows::FlowsArgs),
    /// Replay stored flows: `--client FILTER` re-sends their requests.
    Replay(replay::ReplayArgs),
    /// Runs a script worker (what `flowtap -s` starts for itself).
    #[command(name = "script-host", hide = true)]
    ScriptHost(flowtap_script_host::cli::Args),
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    flags::flag_options_from_set(&mut cli);
    let options = match build_options(&cli) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("flowtap: {e:#}");
            return ExitCode::from(2);
        }
    };
    init_logging(&options.termlog_verbosity, cli.log.log_format);
    options.tls.warn();
    if cli.command.is_none() {
        match check_builtins(&options) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("flowtap: {e}");
                return ExitCode::FAILURE;
            }
            // The proxy's configuration itself is reported where it is used, as before.
            Err(_) => {}
        }
        if !options.builtins.modify_body.is_empty() && options.stream_large_bodies.is_some() {
            tracing::warn!(
                "Both modify_body and stream_large_bodies are active. Streamed bodies will not be modified."
            );
        }
    }
    if matches!(cli.command, Some(Command::ScriptHost(_)))
        && let Some(Command::ScriptHost(args)) = cli.command.take()
    {
        return match flowtap_script_host::cli::main(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("flowtap script-host: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    // Each client takes two descriptors: the usual soft limit of 1024 would end accepting at
    // about 500 clients.
    let descriptors = flowtap_proxy_core::limits::raise_descriptor_limit();
    tracing::debug!("descriptor limit: {descriptors}");
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("flowtap: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, options)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("flowtap: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn build_options(cli: &Cli) -> anyhow::Result<Options> {
    let mut o = Options::default();
    for spec in &cli.set {
        o.set(spec)?;
    }
    if let Some(port) = cli.listen_port {
        o.listen_port = Some(port);
    }
    if let Some(host) = &cli.listen_host {
        o.listen_host = host.clone();
    }
    if cli.quiet {
        o.termlog_verbosity = "error".into();
        o.flow_detail = 0;
    }
    if cli.verbose {
        o.termlog_verbosity = "debug".into();
        o.flow_detail = 2;
    }
    if let Some(detail) = cli.flow_detail {
        o.flow_detail = detail;
    }
    for spec in cli.builtins.as_set() {
        o.set(&spec)?;
    }
    o.ssl_insecure |= cli.ssl_insecure;
    o.ignore_hosts.extend(cli.ignore_hosts.iter().cloned());
    o.allow_hosts.extend(cli.allow_hosts.iter().cloned());
    o.tcp_hosts.extend(cli.tcp_hosts.iter().cloned());
    o.mode.extend(cli.mode.iter().cloned());
    listeners(&o)?;
    o.tls.check()?;
    Ok(o)
}

/// Checks the built-in addons' options as mitmdump does when it configures them: a spec that
/// does not parse stops the command with mitmdump's message (and, as mitmdump, status 1).
fn check_builtins(options: &Options) -> anyhow::Result<Result<(), String>> {
    let config = proxy_config(options)?;
    Ok(flowtap_proxy_core::builtins::Builtins::new(&config)
        .map(drop)
        .map_err(|e| e.to_string()))
}

fn init_logging(verbosity: &str, format: flowtap_telemetry::LogFormat) {
    let level = match verbosity {
        "error" => "error",
        "warn" => "warn",
        "debug" => "debug",
        _ => "info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLOWTAP_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{level},h2=warn,hyper=warn,rustls=warn"))
    });
    if let Err(e) = flowtap_telemetry::init_logging(format, filter, false) {
        eprintln!("flowtap: {e}");
    }
}

async fn run(mut cli: Cli, options: Options) -> anyhow::Result<ExitCode> {
    let security = cli
        .grpc
        .config()
        .context("reading the gRPC client files (--grpc-*)")?;
    match cli.command.take() {
        Some(Command::Flows(args)) => return flows::run(args, &options.confdir, &security).await,
        Some(Command::Replay(args)) => return replay::run(args, &options, &security).await,
        Some(Command::ScriptHost(_)) => {
            anyhow::bail!("the script-host subcommand runs before the runtime starts")
        }
        None => {}
    }
    let _metrics = cli.metrics.start()?;
    flowtap_telemetry::proxy::register();
    if !cli.scripts.is_empty() || !cli.script_host.is_empty() {
        flowtap_telemetry::script::register();
    }
    if cli.store_addr.is_some() {
        flowtap_telemetry::sink::register();
    }
    let filter = match parse_filter(&cli.filter.join(" "))? {
        Ok(filter) => filter,
        Err(code) => return Ok(code),
    };
    let save_filter = match options
        .deferred
        .get("save_stream_filter")
        .map(|f| parse_filter(f))
        .transpose()?
    {
        Some(Err(code)) => return Ok(code),
        Some(Ok(f)) => f,
        None => filter.clone(),
    };
    if let Some(Err(code)) = options
        .deferred
        .get("intercept")
        .map(|f| parse_filter(f))
        .transpose()?
    {
        return Ok(code);
    }
    let scripts = match start_scripts(&cli, &options, &security).await {
        Ok(scripts) => scripts,
        // An error logged while the scripts started: workers of our own printed it on stdout
        // (as mitmdump's log does); a shared worker's report is printed whole.
        Err(ScriptsError::Startup { traceback }) => {
            eprintln!(
                "{}",
                scripts::exit_message(&traceback, cli.script_host.is_empty())
            );
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e.into()),
    };
    let mut hooks: Arc<dyn Hooks> = match &scripts {
        Some(client) => client.clone(),
        None => Arc::new(NoHooks::default()),
    };
    if !cli.server_replay.is_empty() || cli.server_replay_store.is_some() {
        let mut flows = Vec::new();
        for path in &cli.server_replay {
            flows.extend(read_flow_file(path)?);
        }
        if let Some(filter) = &cli.server_replay_store {
            if let Err(code) = parse_filter(filter)? {
                return Ok(code);
            }
            flows.extend(stored_flows(&cli, &options, &security, filter).await?);
        }
        let options = serverplayback::PlaybackOptions::from_options(&options)?;
        hooks = Arc::new(serverplayback::ServerPlayback::new(hooks, flows, options));
    }
    for name in options
        .deferred
        .keys()
        .filter(|n| options::NOT_BUILT.contains(&n.as_str()))
    {
        tracing::warn!(
            "option {name:?} is mitmdump's but not built in flowtap: it does not change the proxy (docs/options.md)"
        );
    }
    if scripts.is_none() {
        let known = |name: &str| {
            options::CLI_OPTIONS.contains(&name)
                || serverplayback::OPTION_NAMES.contains(&name)
                || options::NOT_BUILT.contains(&name)
        };
        for name in options.deferred.keys().filter(|n| !known(n)) {
            tracing::warn!("unknown option {name:?}: no script registered it");
        }
    }
    let code = serve_or_read(
        &cli,
        &options,
        &security,
        (filter, save_filter),
        hooks,
        scripts.as_ref(),
    )
    .await;
    if let Some(client) = scripts {
        client.shutdown().await;
        // An error logged during the scripts' `running` hooks stopped the proxy: mitmdump
        // exits with status 1 then.
        if let Some(report) = client.startup_failure() {
            eprintln!(
                "{}",
                scripts::exit_message(&report, cli.script_host.is_empty())
            );
            return Ok(ExitCode::FAILURE);
        }
    }
    code
}

/// Starts the script workers for `-s` (or connects to `--script-host` workers).
async fn start_scripts(
    cli: &Cli,
    options: &Options,
    security: &flowtap_grpc::ClientConfig,
) -> Result<Option<Arc<ScriptClient>>, ScriptsError> {
    if cli.scripts.is_empty() && cli.script_host.is_empty() {
        return Ok(None);
    }
    let config = scripts::Config {
        scripts: cli.scripts.clone(),
        workers: options.script_workers,
        addresses: cli.script_host.clone(),
        binary: std::env::current_exe().ok(),
        binary_args: worker_args(cli.log.log_format),
        hook_timeout: options.hook_timeout,
        hook_stuck_timeout: options.hook_stuck_timeout,
        failure: options
            .script_failure
            .parse()
            .unwrap_or(FailurePolicy::Open),
        deferred: options
            .deferred
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        core_options: options.for_scripts(),
        grpc: security.clone(),
        ..scripts::Config::default()
    };
    let (client, loaded) = ScriptClient::start(config).await?;
    for script in &loaded {
        tracing::info!("Loading script {}", script.path);
    }
    Ok(Some(client))
}

/// The option through which the workers learn where the proxy listens (a `--listen-port 0`
/// becomes a real port only at bind): `SPEC=HOST:PORT` lines, for the `proxyserver` addon's
/// `listen_addrs` that scripts read in `running` (portfile-style scripts). The worker takes it
/// out before the scripts' `configure` sees anything.
const LISTEN_ADDRS_OPTION: &str = "flowtap_listen_addrs";

/// Tells the workers the bound addresses, before `running` fires (that comes with the proxy's
/// control, when it starts to serve): one `SPEC=HOST:PORT` line per listener. A worker that
/// does not answer in time is logged, not fatal: its scripts then see the configured ports.
async fn announce_listen_addrs(
    client: &ScriptClient,
    bound: &[(flowtap_proxy_core::ModeSpec, SocketAddr)],
) {
    let lines: Vec<String> = bound
        .iter()
        .map(|(spec, addr)| format!("{spec}={addr}"))
        .collect();
    let value = flowtap_proto::v1::OptionValue {
        kind: Some(flowtap_proto::v1::option_value::Kind::Text(
            lines.join("\n"),
        )),
    };
    let announce = vec![flowtap_proto::v1::Option {
        name: LISTEN_ADDRS_OPTION.to_string(),
        value: Some(value),
    }];
    if let Err(e) = client.configure(announce).await {
        tracing::warn!("could not tell the script workers the listen addresses: {e}");
    }
}

/// The subcommand that runs a worker, logging as this process does.
fn worker_args(format: flowtap_telemetry::LogFormat) -> Vec<String> {
    let mut args = vec!["script-host".to_string()];
    if format == flowtap_telemetry::LogFormat::Json {
        args.extend(["--log-format".to_string(), "json".to_string()]);
    }
    args
}

/// Reads `-r` flows through the hooks, then (unless `-n`) serves the proxy.
async fn serve_or_read(
    cli: &Cli,
    options: &Options,
    security: &flowtap_grpc::ClientConfig,
    (filter, save_filter): (Option<Filter>, Option<Filter>),
    hooks: Arc<dyn Hooks>,
    scripts: Option<&Arc<ScriptClient>>,
) -> anyhow::Result<ExitCode> {
    let sink = Arc::new(Sinks(
        build_sinks(cli, options, security, filter.clone(), save_filter).await?,
    ));
    if cli.rfile.is_some() || !cli.client_replay.is_empty() {
        // Without a proxy server the scripts' `running` fires here.
        hooks.attach(Arc::new(ReadOnlyControl));
    }
    if let Some(path) = &cli.rfile {
        let summary =
            readfile::read_file(path, filter.as_ref(), hooks.as_ref(), sink.as_ref()).await?;
        if let Some(error) = &summary.error {
            tracing::error!(
                "Flow file corrupted - loaded {} flows: {error}",
                summary.loaded
            );
        }
        if cli.no_server || !options.keepserving {
            sink.close();
            return Ok(if summary.error.is_some() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            });
        }
    }
    let ca = Arc::new(load_ca(cli, options)?);
    if !cli.client_replay.is_empty() {
        let replay = ClientReplay::new(
            proxy_config(options)?,
            ca.clone(),
            hooks.clone(),
            sink.clone(),
        )?;
        let mut flows = Vec::new();
        for path in &cli.client_replay {
            flows.extend(
                read_flow_file(path)?
                    .into_iter()
                    .filter(|f| f.r#type == "http" && f.request.is_some()),
            );
        }
        if options.client_replay_concurrency == -1 {
            // No limit: every request is in flight at once.
            futures_util::future::join_all(flows.into_iter().map(|flow| replay.replay(flow))).await;
        } else {
            for flow in flows {
                replay.replay(flow).await;
            }
        }
        if cli.no_server || !options.keepserving {
            sink.close();
            return Ok(ExitCode::SUCCESS);
        }
    }
    if cli.no_server {
        sink.close();
        return Ok(ExitCode::SUCCESS);
    }
    let config = proxy_config(options)?;
    let signalled = shutdown_signal();
    let proxy = Proxy::bind(config, ca, hooks, sink).await?;
    let bound = proxy.local_addrs();
    for (spec, addr) in &bound {
        tracing::info!("{} listening at {addr}", describe(&spec.mode));
    }
    if let Some(client) = scripts {
        announce_listen_addrs(client, &bound).await;
    }
    flowtap_telemetry::set_ready(true);
    proxy
        .serve(async {
            signalled.await;
            flowtap_telemetry::set_ready(false);
        })
        .await;
    Ok(ExitCode::SUCCESS)
}

/// What a listener in `mode` is, as mitmdump says it at start-up.
fn describe(mode: &flowtap_proxy_core::Mode) -> String {
    match mode {
        flowtap_proxy_core::Mode::Regular => "HTTP(S) proxy".to_string(),
        flowtap_proxy_core::Mode::Reverse(t) => {
            format!("Reverse proxy to {}://{}", t.scheme, t.authority())
        }
        flowtap_proxy_core::Mode::Socks5 => "SOCKS v5 proxy".to_string(),
        flowtap_proxy_core::Mode::Transparent => "Transparent proxy".to_string(),
        flowtap_proxy_core::Mode::Dns => "DNS server".to_string(),
        flowtap_proxy_core::Mode::Upstream(next) => {
            let scheme = if next.tls { "https" } else { "http" };
            format!(
                "HTTP(S) proxy (upstream mode via {scheme}://{}:{})",
                next.host, next.port
            )
        }
    }
}

/// The store `--store` names, or `confdir/flows.db`.
fn local_store(cli: &Cli, options: &Options) -> flowtap_flow_store::StoreLocation {
    match cli.store.as_deref().filter(|s| !s.is_empty()) {
        Some(store) => store.parse().unwrap_or_else(|never| match never {}),
        None => flowtap_flow_store::StoreLocation::Sqlite(options.confdir.join("flows.db")),
    }
}

/// The stored flows matching `filter`, from `--store-addr` or the local store, with bodies.
async fn stored_flows(
    cli: &Cli,
    options: &Options,
    security: &flowtap_grpc::ClientConfig,
    filter: &str,
) -> anyhow::Result<Vec<Flow>> {
    use flowtap_flow_store::client::StoreClient;
    let client = match &cli.store_addr {
        Some(endpoint) => StoreClient::connect_with(endpoint, security).await?,
        None => StoreClient::open(&local_store(cli, options)).await?,
    };
    let mut ids = Vec::new();
    client.list(filter, |summary| ids.push(summary.id)).await?;
    let mut flows = Vec::with_capacity(ids.len());
    for id in &ids {
        flows.push(client.flow(id, 0).await?);
    }
    Ok(flows)
}

/// All flows of a flow file (or HAR); a corrupt tail is logged and the flows before it kept.
fn read_flow_file(path: &std::path::Path) -> anyhow::Result<Vec<Flow>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let (flows, error) = flowtap_flow::FlowReader::new(std::io::BufReader::new(file)).read_all();
    if let Some(e) = error {
        tracing::error!("{}: {e}", path.display());
    }
    Ok(flows)
}

/// Parses a filter expression; an empty one is no filter. A malformed one is reported with
/// its position and gives exit status 2.
fn parse_filter(text: &str) -> anyhow::Result<Result<Option<Filter>, ExitCode>> {
    if text.trim().is_empty() {
        return Ok(Ok(None));
    }
    match Filter::parse(text) {
        Ok(f) => Ok(Ok(Some(f))),
        Err(e) => {
            eprintln!("flowtap: invalid filter expression {text:?}: {e}");
            Ok(Err(ExitCode::from(2)))
        }
    }
}

async fn build_sinks(
    cli: &Cli,
    options: &Options,
    security: &flowtap_grpc::ClientConfig,
    filter: Option<Filter>,
    save_filter: Option<Filter>,
) -> anyhow::Result<Vec<Arc<dyn FlowSink>>> {
    let mut sinks: Vec<Arc<dyn FlowSink>> = Vec::new();
    let dumper = dump::Dumper {
        detail: options.flow_detail,
        showhost: options.showhost,
    };
    match filter {
        Some(filter) => sinks.push(Arc::new(save::Filtered {
            filter,
            inner: dumper,
        })),
        None => sinks.push(Arc::new(dumper)),
    }
    if let Some(spec) = &cli.save_stream_file {
        let saver = save::FileSaver::open(spec)?;
        match save_filter {
            Some(filter) => sinks.push(Arc::new(save::Filtered {
                filter,
                inner: saver,
            })),
            None => sinks.push(Arc::new(saver)),
        }
    }
    if let Some(endpoint) = &cli.store_addr {
        sinks.push(Arc::new(archive::Archive::start(
            endpoint,
            &options.confdir,
            security,
        )?));
    }
    if cli.store.is_some() {
        sinks.push(Arc::new(
            archive::LocalArchive::open(&local_store(cli, options)).await?,
        ));
    }
    if let Some(path) = options.deferred.get("hardump").filter(|p| !p.is_empty()) {
        sinks.push(Arc::new(save::HarDump::new(expand_tilde(path))));
    }
    Ok(sinks)
}

fn load_ca(cli: &Cli, options: &Options) -> anyhow::Result<CertificateAuthority> {
    let ca = match &cli.use_mitmproxy_ca {
        Some(path) => {
            let path = expand_tilde(path);
            CertificateAuthority::load_mitmproxy(&path)
                .with_context(|| format!("loading the mitmproxy CA from {}", path.display()))?
        }
        None => CertificateAuthority::load_or_create_with(&options.confdir, options.tls.ca_key())
            .with_context(|| {
            format!(
                "loading or creating the CA in {}",
                options.confdir.display()
            )
        })?,
    };
    let ca = options.tls.with_leaf_key(ca)?;
    Ok(ca.with_serve_options(options.tls.serve_options()?)?)
}

/// The listeners the `mode` option asks for (regular when it is empty), each at its spec's
/// `@[HOST:]PORT`, else at `listen_host` and `listen_port` (else the mode's default port). Two
/// may not share an address (as in mitmproxy; port 0 is a new port each time).
fn listeners(options: &Options) -> anyhow::Result<Vec<flowtap_proxy_core::Listener>> {
    let listen_ip: IpAddr = if options.listen_host.is_empty() {
        IpAddr::from([0, 0, 0, 0])
    } else {
        options
            .listen_host
            .parse()
            .with_context(|| format!("invalid --listen-host {:?}", options.listen_host))?
    };
    let specs = match options.mode.as_slice() {
        [] => vec![flowtap_proxy_core::ModeSpec::regular()],
        specs => specs
            .iter()
            .map(|spec| flowtap_proxy_core::ModeSpec::parse(spec))
            .collect::<Result<_, _>>()?,
    };
    let mut listeners: Vec<flowtap_proxy_core::Listener> = Vec::with_capacity(specs.len());
    for spec in specs {
        let default_port = options
            .listen_port
            .unwrap_or_else(|| spec.mode.default_port());
        let addr = match &spec.listen {
            None => SocketAddr::new(listen_ip, default_port),
            Some((None, port)) => SocketAddr::new(listen_ip, *port),
            Some((Some(host), port)) => SocketAddr::new(
                host.parse()
                    .with_context(|| format!("invalid listen host {host:?} in --mode {spec}"))?,
                *port,
            ),
        };
        // The same address and a transport in common (the DNS modes take UDP and TCP).
        let same = |other: &flowtap_proxy_core::Listener| {
            let (a, b) = (&other.spec.mode, &spec.mode);
            other.addr == addr && ((a.is_udp() && b.is_udp()) || (a.is_tcp() && b.is_tcp()))
        };
        if addr.port() != 0 && listeners.iter().any(same) {
            anyhow::bail!("Cannot spawn multiple servers on the same address: {addr}");
        }
        listeners.push(flowtap_proxy_core::Listener { spec, addr });
    }
    Ok(listeners)
}

fn proxy_config(options: &Options) -> anyhow::Result<Config> {
    Ok(Config {
        listeners: listeners(options)?,
        keep_host_header: options.keep_host_header,
        upstream_auth: options.upstream_auth.clone(),
        proxyauth: options.proxyauth.clone(),
        builtins: options.builtins.clone(),
        connection_strategy: if options.connection_strategy == "lazy" {
            flowtap_proxy_core::ConnectionStrategy::Lazy
        } else {
            flowtap_proxy_core::ConnectionStrategy::Eager
        },
        ignore_hosts: options.ignore_hosts.clone(),
        dns_name_servers: options.dns_name_servers.clone(),
        allow_hosts: options.allow_hosts.clone(),
        tcp_hosts: options.tcp_hosts.clone(),
        websocket: options.websocket,
        ssl_insecure: options.ssl_insecure,
        upstream_trusted_ca: options.ssl_verify_upstream_trusted_ca.clone(),
        upstream_trusted_confdir: options.tls.trusted_confdir.clone(),
        client_certs: options.tls.client_certs.clone(),
        tls_versions_server: options.tls.server_versions,
        upstream_cert: options.tls.upstream_cert,
        add_upstream_certs_to_client_chain: options.tls.add_upstream_certs_to_client_chain,
        stream_large_bodies_bytes: options.stream_large_bodies,
        http2: options.http2,
        shutdown_grace: options.shutdown_grace,
        intercept: intercept_filter(options)?,
        request_head_timeout: options.request_head_timeout,
        client_idle_timeout: options.client_idle_timeout,
        tls_handshake_timeout: options.tls_handshake_timeout,
        tunnel_idle_timeout: options.tunnel_idle_timeout,
        max_client_connections: options.max_client_connections,
        body_size_limit: options.body_size_limit,
        spill_dir: Some(options.confdir.clone()),
        ..Config::default()
    })
}

/// `--set intercept=FILTER`, unless `--set intercept_active=false` (as in mitmproxy, a filter
/// turns intercepting on).
fn intercept_filter(options: &Options) -> anyhow::Result<Option<Filter>> {
    let active = options
        .deferred
        .get("intercept_active")
        .is_none_or(|v| !matches!(v.trim(), "false" | "0" | "no" | "off"));
    match options.deferred.get("intercept") {
        Some(text) if active && !text.trim().is_empty() => Filter::parse(text)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("invalid intercept filter {text:?}: {e}")),
        _ => Ok(None),
    }
}

/// Flows read from a file are not live: scripts cannot act on them outside their hooks.
struct ReadOnlyControl;

impl CoreControl for ReadOnlyControl {
    fn kill(&self, flow_id: &str) -> Result<(), String> {
        Err(format!("flow {flow_id} is not live (read from a file)"))
    }
    fn resume(&self, flow_id: &str) -> Result<(), String> {
        Err(format!("flow {flow_id} is not live (read from a file)"))
    }
    fn replay_client(&self, flow: Flow) -> Result<(), String> {
        Err(format!(
            "replaying flow {} needs the proxy; run without -n",
            flow.id
        ))
    }
    fn inject_websocket(
        &self,
        flow_id: &str,
        _: bool,
        _: bytes::Bytes,
        _: bool,
    ) -> Result<(), String> {
        Err(format!("flow {flow_id} is not live (read from a file)"))
    }
    fn inject_tcp(&self, flow_id: &str, _: bool, _: bytes::Bytes) -> Result<(), String> {
        Err(format!("flow {flow_id} is not live (read from a file)"))
    }
    fn shutdown(&self) {}
}

/// Completes on SIGINT or SIGTERM.
/// SIGINT or SIGTERM. The handlers are installed when this is called, not when the future is
/// first polled: a signal that comes after the "listening at" line but before serving starts
/// shuts down gracefully instead of killing the process.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
            tracing::info!("shutting down");
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_options_are_taken_from_set_too() {
        let mut cli = Cli::try_parse_from([
            "flowtap",
            "--set",
            "save_stream_file=out.mitm",
            "--set",
            "scripts=a.py",
            "--set",
            "server=false",
            "--set",
            "anticache=true",
            "-M",
            "|a|b",
        ])
        .unwrap();
        flags::flag_options_from_set(&mut cli);
        assert_eq!(cli.save_stream_file.as_deref(), Some("out.mitm"));
        assert_eq!(cli.scripts, ["a.py"]);
        assert!(cli.no_server);
        assert_eq!(cli.set, ["anticache=true"]);
        let options = build_options(&cli).unwrap();
        assert!(options.builtins.anticache);
        assert_eq!(options.builtins.map_remote, ["|a|b"]);
    }

    /// Arguments of the same name on several levels must not collide (clap panics at parse time
    /// when one id has two types).
    #[test]
    fn command_lines_parse() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        for line in [
            &["flowtap", "--store", "-w", "out.mitm", "~c 200"][..],
            &[
                "flowtap",
                "--store",
                "x.db",
                "--store-addr",
                "http://127.0.0.1:1",
            ],
            &[
                "flowtap",
                "--set",
                "confdir=/tmp/x",
                "flows",
                "--store",
                "x.db",
                "list",
                "~q",
            ],
            &[
                "flowtap",
                "flows",
                "--store-addr",
                "http://127.0.0.1:1",
                "export",
                "~s",
                "-o",
                "f.har",
            ],
            &["flowtap", "replay", "--client", "~u /b", "--store", "x.db"],
            &[
                "flowtap",
                "--metrics",
                "127.0.0.1:0",
                "--log-format",
                "json",
                "-s",
                "a.py",
            ],
            &[
                "flowtap",
                "script-host",
                "--log-format",
                "json",
                "--metrics",
                "9464",
                "-s",
                "a.py",
            ],
            &[
                "flowtap",
                "script-host",
                "-s",
                "a.py",
                "--listen",
                "127.0.0.1:0",
            ],
            &[
                "flowtap",
                "-n",
                "-r",
                "in.mitm",
                "-s",
                "a.py",
                "-S",
                "rec.mitm",
                "--server-replay-store",
                "~d x",
            ],
        ] {
            if let Err(e) = Cli::try_parse_from(line) {
                panic!("{line:?}: {e}");
            }
        }
    }
}
