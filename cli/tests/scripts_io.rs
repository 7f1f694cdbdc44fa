//! `mitmproxy.io` and `mitmproxy.utils.strutils` in scripts, as mitmproxy's
//! `io-write-flow-file.py` and `tcp-simple.py` use them: a script reads a flow file recorded by
//! mitmdump 12.3.1 (six flows of every type), writes the flows it sees with `FlowWriter`, and
//! flowtap's own reader reads that file back.

#![allow(missing_docs)]

mod support;

use flowtap_flow::FlowReader;
use support::Flowtap;
use support::scripts::{TempScript, curl_via, echo_origin, fixture, header_value, poll};

const SCRIPT: &str = r#"
import io as stdio, logging, pathlib
from mitmproxy import io, exceptions
from mitmproxy.utils import strutils

OUT = pathlib.Path(__file__).with_name("out.mitm")

class Writer:
    def load(self, loader):
        with open(FIXTURE, "rb") as f:
            flows = list(io.FlowReader(f).stream())
        kinds = ",".join(f.type for f in flows)
        logging.info("read %d flows (%s), first %s", len(flows), kinds, flows[0].request.pretty_url)
        try:
            list(io.FlowReader(stdio.BytesIO(b"12:not a flow")).stream())
        except exceptions.FlowReadException as e:
            logging.info("bad file refused: %s", e)
        self.file = open(OUT, "wb")
        self.writer = io.FlowWriter(self.file)

    def response(self, flow):
        flow.response.headers["x-escaped"] = strutils.bytes_to_escaped_str(b"a\x00b'")
        self.writer.add(flow)
        self.file.flush()

addons = [Writer()]
"#;

#[test]
fn scripts_read_and_write_flow_files() {
    let source = format!("FIXTURE = {:?}\n{SCRIPT}", fixture("all-mixed.mitm"));
    let script = TempScript::new("flowfiles.py", &source);
    let origin = echo_origin();
    let (flowtap, proxy) = Flowtap::start(&["-s", script.arg()]);
    // `load` ran before the proxy said where it listens; its log lines are on stdout.
    flowtap.stdout.wait_for("from the load hook", |l| {
        l.contains("read 6 flows") || l.contains("bad file refused")
    });
    let log = poll("both lines of the load hook", || {
        let log = flowtap.stdout.all().join("\n");
        (log.contains("read 6 flows") && log.contains("bad file refused")).then_some(log)
    });
    assert!(
        log.contains(
            "read 6 flows (http,http,http,http,tcp,dns), first http://127.0.0.1:18081/hello.txt"
        ),
        "{log}"
    );
    assert!(
        log.contains("bad file refused: malformed flow file"),
        "{log}"
    );

    let url = format!("http://127.0.0.1:{}/written", origin.port());
    let out = curl_via(proxy, &url, &[]);
    assert_eq!(
        header_value(&out.stdout, "x-escaped").as_deref(),
        Some("a\\x00b'"),
        "{}",
        out.stdout
    );
    let written = script.sibling("out.mitm");
    let flows = poll("the written flow", || {
        let data = std::fs::read(&written).ok()?;
        let (flows, error) = FlowReader::new(&data[..]).read_all();
        assert!(error.is_none(), "flowtap reads the file: {error:?}");
        (!flows.is_empty()).then_some(flows)
    });
    let request = flows[0].request.as_ref().expect("a request");
    assert_eq!(&request.path[..], b"/written");
    assert_eq!(flows[0].response.as_ref().map(|r| r.status_code), Some(200));
    drop(flowtap);
}
