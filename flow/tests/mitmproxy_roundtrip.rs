//! Differential tests against the real mitmproxy 12.3.1 (installed by
//! `scripts/install-mitmproxy`): it decodes the fixtures and our own files, re-writes our
//! files byte for byte, and evaluates the same filters.
//!
//! Set `FLOWTAP_SKIP_MITMPROXY=1` to skip them (they print why); otherwise they must run.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use bytes::Bytes;
use flowtap_flow::flowfile::encode_flow;
use flowtap_flow::model::RequestExt;
use flowtap_flow::state::{to_state, value_to_proto};
use flowtap_flow::tnetstring::{Dict, Value, python_float_repr};
use flowtap_flow::{Filter, FlowWriter};
use flowtap_proto::v1::{self, Flow, Header, ServerSpec, TcpMessage, ValueDict, ValueEntry};
use serde_json::{Value as Json, json};
use support::{fixture_files, fixtures_dir, load};

fn python() -> Option<&'static Path> {
    if std::env::var("FLOWTAP_SKIP_MITMPROXY").as_deref() == Ok("1") {
        eprintln!("SKIPPED: mitmproxy differential test (FLOWTAP_SKIP_MITMPROXY=1)");
        return None;
    }
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    Some(PYTHON.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-mitmproxy");
        let out = Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success(), "scripts/install-mitmproxy failed");
        let stdout = String::from_utf8(out.stdout).unwrap();
        let venv = stdout
            .lines()
            .last()
            .expect("the script prints the venv path")
            .trim();
        PathBuf::from(venv).join("bin/python")
    }))
}

fn helper(python: &Path, args: &[&str], stdin: &str) -> String {
    let helper = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mitmproxy_helper.py");
    let mut child = Command::new(python)
        .arg(helper)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "helper {args:?} failed:\n{stderr}");
    String::from_utf8(out.stdout).unwrap()
}

/// The same canonical form as `mitmproxy_helper.py`.
fn canon(v: &Value) -> Json {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => json!(b),
        Value::Int(i) => json!(i),
        Value::Float(f) => json!(format!("f:{}", python_float_repr(*f))),
        Value::Bytes(b) => json!(format!("b:{}", hex(b))),
        Value::Text(t) => json!(format!("s:{t}")),
        Value::List(items) => Json::Array(items.iter().map(canon).collect()),
        Value::Dict(d) => Json::Object(
            d.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Value::Text(t) => t.clone(),
                        Value::Bytes(b) => format!("b:{}", hex(b)),
                        other => format!("{other:?}"),
                    };
                    (key, canon(v))
                })
                .collect(),
        ),
    }
}

fn describe(flow: &Flow) -> Json {
    let mut out = json!({ "state": canon(&to_state(flow)) });
    if let (Some(request), "http") = (&flow.request, flow.r#type.as_str()) {
        out["url"] = json!(request.url());
        out["pretty_url"] = json!(request.pretty_url());
        out["pretty_host"] = json!(request.pretty_host());
    }
    out
}

fn assert_same(path: &Path, ours: &[Flow], python: &Path) {
    let theirs: Json =
        serde_json::from_str(&helper(python, &["canon", path.to_str().unwrap()], "")).unwrap();
    let theirs = theirs.as_array().unwrap();
    assert_eq!(
        theirs.len(),
        ours.len(),
        "{}: number of flows",
        path.display()
    );
    for (i, (flow, their)) in ours.iter().zip(theirs).enumerate() {
        assert_eq!(&describe(flow), their, "{} flow {i}", path.display());
    }
}

#[test]
fn fixtures_decode_as_mitmproxy_decodes_them() {
    let Some(python) = python() else { return };
    for path in fixture_files() {
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_same(&path, &load(name), python);
    }
}

fn header(name: &str, value: &str) -> Header {
    Header {
        name: Bytes::from(name.to_owned()),
        value: Bytes::from(value.to_owned()),
    }
}

/// Flows changed the ways scripts and the proxy change them, plus a hand-made TCP flow.
fn modified_flows() -> Vec<Flow> {
    let original = load("http-get-200.mitm").remove(0);
    let mut http = original.clone();
    let request = http.request.as_mut().unwrap();
    request.headers.push(header("X-Added", "yes"));
    request.trailers = Some(v1::Headers {
        fields: vec![header("X-Trailer", "t")],
    });
    http.response
        .as_mut()
        .unwrap()
        .headers
        .push(header("Set-Cookie", "a=b; Path=/"));
    let mut meta = Dict::new();
    meta.set(
        "k",
        Value::List(vec![
            Value::Int(1),
            Value::Float(2.5),
            Value::from("s"),
            Value::Bytes(Bytes::from_static(b"b")),
            Value::Null,
            Value::Bool(true),
        ]),
    );
    meta.set("tiny", Value::Float(1e-5));
    meta.set("huge", Value::Float(1e20));
    http.metadata = match value_to_proto(&Value::Dict(meta)).kind {
        Some(v1::value::Kind::Dict(d)) => Some(d),
        _ => unreachable!(),
    };
    http.marked = ":default:".to_owned();
    http.comment = "a comment\nwith two lines".to_owned();
    http.is_replay = Some("request".to_owned());
    http.backup = Some(Box::new(original));
    http.server_conn.as_mut().unwrap().via = Some(ServerSpec {
        scheme: "http".to_owned(),
        address: Some(v1::Address {
            host: "proxy".to_owned(),
            port: 8081,
        }),
    });

    let mut tcp = load("tcp-raw.mitm").remove(0);
    tcp.id = "11111111-2222-4333-8444-555555555555".to_owned();
    tcp.messages.push(TcpMessage {
        from_client: true,
        content: Bytes::from_static(b"\x00\xffmore"),
        timestamp: 1795238493.5,
    });
    tcp.metadata = Some(ValueDict {
        entries: vec![ValueEntry {
            key: Some(value_to_proto(&Value::from("note"))),
            value: Some(value_to_proto(&Value::from("hand-made"))),
        }],
    });
    let mut udp = tcp.clone();
    udp.r#type = "udp".to_owned();
    udp.id = "11111111-2222-4333-8444-666666666666".to_owned();

    let mut ws = load("websocket.mitm").remove(0);
    ws.websocket.as_mut().unwrap().messages[0].injected = true;
    ws.websocket.as_mut().unwrap().messages[1].dropped = true;

    let mut failed = load("http-conn-refused.mitm").remove(0);
    failed.request.as_mut().unwrap().content = None;
    failed.intercepted = true;

    let mut dns = load("dns-query.mitm").remove(0);
    dns.dns_response = None;
    vec![http, tcp, udp, ws, failed, dns]
}

#[test]
fn flows_written_here_load_in_mitmproxy_and_rewrite_identically() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("ours.mitm");
    let flows = modified_flows();
    let mut writer = FlowWriter::new(std::fs::File::create(&ours).unwrap());
    for flow in &flows {
        writer.add(flow).unwrap();
    }
    drop(writer);
    assert_same(&ours, &flows, python);

    // mitmproxy keeps a loaded `backup` and `metadata` as the raw decoded dicts, whose keys are
    // in on-disk (reversed) order, so its re-write flips those dicts. Compare such flows by
    // value (order-insensitive), and every other flow byte for byte.
    let theirs = dir.path().join("theirs.mitm");
    let count = helper(
        python,
        &["rewrite", ours.to_str().unwrap(), theirs.to_str().unwrap()],
        "",
    );
    assert_eq!(count.trim(), flows.len().to_string());
    let order_sensitive =
        |f: &Flow| f.backup.is_some() || f.metadata.as_ref().is_some_and(|m| m.entries.len() > 1);
    let mut raw = std::io::Cursor::new(std::fs::read(&theirs).unwrap());
    for flow in &flows {
        let start = raw.position() as usize;
        let value = flowtap_flow::tnetstring::read_value(&mut raw, 0)
            .unwrap()
            .unwrap();
        let end = raw.position() as usize;
        if order_sensitive(flow) {
            let reread = flowtap_flow::state::from_state(&value).unwrap();
            assert_eq!(describe(&reread), describe(flow));
        } else {
            assert_bytes_equal(&encode_flow(flow), &raw.get_ref()[start..end]);
        }
    }
}

fn assert_bytes_equal(ours: &[u8], theirs: &[u8]) {
    let differs = ours.iter().zip(theirs).position(|(a, b)| a != b);
    if let Some(at) =
        differs.or((ours.len() != theirs.len()).then_some(ours.len().min(theirs.len())))
    {
        let context = |data: &[u8]| {
            String::from_utf8_lossy(&data[at.saturating_sub(80)..(at + 80).min(data.len())])
                .into_owned()
        };
        panic!(
            "mitmproxy wrote the flow differently at byte {at}:\nours:   {}\ntheirs: {}",
            context(ours),
            context(theirs)
        );
    }
}

#[test]
fn old_versions_migrate_as_mitmproxy_migrates_them() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v7.mitm");
    let old = support::old_flows::v7_flow();
    std::fs::write(&path, flowtap_flow::tnetstring::encode(&old)).unwrap();
    let ours = flowtap_flow::flowfile::read_flows(&std::fs::read(&path).unwrap()).unwrap();
    assert_same(&path, &ours, python);
}

#[test]
fn har_export_matches_mitmproxys_savehar_and_imports_back() {
    let Some(python) = python() else { return };
    for name in [
        "all-mixed.mitm",
        "http-post-body.mitm",
        "http-get-404.mitm",
        "script-modified.mitm",
    ] {
        let path = fixtures_dir().join(name);
        let flows = load(name);
        let ours: Json = serde_json::from_str(&flowtap_flow::har::export_json(&flows)).unwrap();
        let mut theirs: Json =
            serde_json::from_str(&helper(python, &["har", path.to_str().unwrap()], "")).unwrap();
        theirs["log"]["creator"] = ours["log"]["creator"].clone();
        assert_eq!(ours, theirs, "{name}");
    }
    // mitmproxy reads our HAR (the reader switches to HAR on a leading `{`).
    let dir = tempfile::tempdir().unwrap();
    let har = dir.path().join("flows.har");
    let flows = load("all-mixed.mitm");
    std::fs::write(&har, flowtap_flow::har::export_json(&flows)).unwrap();
    let theirs: Json =
        serde_json::from_str(&helper(python, &["canon", har.to_str().unwrap()], "")).unwrap();
    let ours = flowtap_flow::flowfile::read_flows(&std::fs::read(&har).unwrap()).unwrap();
    assert_eq!(theirs.as_array().unwrap().len(), ours.len());
    for (our, their) in ours.iter().zip(theirs.as_array().unwrap()) {
        let ours = describe(our);
        for key in ["url", "pretty_url", "pretty_host"] {
            assert_eq!(ours[key], their[key]);
        }
        for field in [
            "method",
            "scheme",
            "host",
            "port",
            "path",
            "headers",
            "content",
            "http_version",
        ] {
            assert_eq!(
                ours["state"]["request"][field], their["state"]["request"][field],
                "request.{field}"
            );
        }
        for field in [
            "status_code",
            "reason",
            "headers",
            "content",
            "http_version",
            "timestamp_start",
            "timestamp_end",
        ] {
            assert_eq!(
                ours["state"]["response"][field], their["state"]["response"][field],
                "response.{field}"
            );
        }
        assert_eq!(
            ours["state"]["server_conn"]["address"],
            their["state"]["server_conn"]["address"]
        );
    }
}

const EXPRESSIONS: &[&str] = &[
    "~all",
    "~a",
    "~e",
    "~http",
    "~marked",
    "~replay",
    "~replayq",
    "~replays",
    "~q",
    "~s",
    "~tcp",
    "~udp",
    "~dns",
    "~websocket",
    "~b ECHO",
    "~b hello",
    "~bq hello",
    "~bs hello",
    "~b 127.0.0.1",
    "~bs localhost",
    "~t text",
    "~tq json",
    "~ts TEXT/PLAIN",
    "~d 127.0.0.1",
    "~dst :18443",
    "~dst 18081",
    "~h curl",
    "~hq Proxy-Connection",
    "~hs 'content-type: text'",
    "~h ^Host",
    "~m GET",
    "~m post",
    "~src 127.0.0.1",
    "~u hello",
    "~u localhost",
    "~meta k",
    "~meta 'k: \\[1'",
    "~meta note",
    "~marker default",
    "~marker star",
    "~comment two",
    "~comment ^with",
    "~c 200",
    "~c 404",
    "~c 101",
    "hello",
    "!~s",
    "~m GET & ~c 200 | ~tcp",
    "~q | ~s & ~e",
    "~http ~c 200",
    "( ~q )",
    "~q &",
    "~x",
    "~c abc",
    "'unterminated",
    "~b \"ECHO hello\"",
    "!~http & !~dns",
    "~bq '\\x00\\xff'",
];

/// Filters mitmproxy 12.3.1 rejects and flowtap accepts (an argument-less operator right
/// before `)`, `&` or `|`), each with the spelling mitmproxy accepts and that it must equal.
const EXTENSIONS: &[(&str, &str)] = &[
    ("(~q)", "( ~q )"),
    ("!(~tcp | ~udp)", "!( ~tcp | ~udp )"),
    ("!(~tcp|~dns)", "!( ~tcp | ~dns )"),
    ("~s&~c 200", "~s & ~c 200"),
    ("(~http|~tcp)", "( ~http | ~tcp )"),
];

#[test]
fn filters_agree_with_mitmproxy() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mixed = dir.path().join("mixed.mitm");
    let mut flows = load("all-mixed.mitm");
    flows.extend(load("script-modified.mitm"));
    flows.extend(load("http-post-body.mitm"));
    flows.extend(load("http-get-404.mitm"));
    flows.extend(load("http-post-body.client-replayed.mitm"));
    flows.extend(modified_flows());
    let mut writer = FlowWriter::new(std::fs::File::create(&mixed).unwrap());
    for flow in &flows {
        writer.add(flow).unwrap();
    }
    drop(writer);
    let mut all: Vec<&str> = EXPRESSIONS.to_vec();
    all.extend(
        EXTENSIONS
            .iter()
            .flat_map(|(ours, theirs)| [*ours, *theirs]),
    );
    let exprs = serde_json::to_string(&all).unwrap();
    let theirs: Json = serde_json::from_str(&helper(
        python,
        &["filter", mixed.to_str().unwrap()],
        &exprs,
    ))
    .unwrap();
    for expr in EXPRESSIONS {
        let ours = match Filter::parse(expr) {
            Ok(filter) => json!(flows.iter().map(|f| filter.matches(f)).collect::<Vec<_>>()),
            Err(_) => json!("error"),
        };
        assert_eq!(ours, theirs[*expr], "filter {expr:?}");
    }
    for (extension, spelled_out) in EXTENSIONS {
        assert_eq!(
            theirs[*extension],
            json!("error"),
            "mitmproxy rejects {extension:?}"
        );
        let filter = Filter::parse(extension).unwrap();
        let ours = json!(flows.iter().map(|f| filter.matches(f)).collect::<Vec<_>>());
        assert_eq!(ours, theirs[*spelled_out], "filter {extension:?}");
    }
    assert!(fixtures_dir().exists());
}
