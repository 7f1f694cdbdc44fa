//! `ctx.options` shows the proxy's own options to scripts, with their values from the command
//! line, beside the options scripts register.

#![allow(missing_docs)]

mod support;

use support::Flowtap;
use support::scripts::{TempScript, curl_via, echo_origin};

const SCRIPT: &str = r#"
from mitmproxy import ctx

def request(flow):
    o = ctx.options
    flow.request.headers["x-options"] = (
        f"{o.listen_host}|{o.mode}|{o.ssl_insecure}|{o.ignore_hosts}|{o.script_workers}"
    )
"#;

#[test]
fn scripts_read_the_proxys_options() {
    let script = TempScript::new("options.py", SCRIPT);
    let origin = echo_origin();
    let (flowtap, proxy) = Flowtap::start(&[
        "-s",
        script.arg(),
        "-k",
        "--ignore-hosts",
        "^example.org:443$",
    ]);
    let out = curl_via(proxy, &format!("http://127.0.0.1:{}/", origin.port()), &[]);
    assert!(
        out.stdout
            .contains("x-options: 127.0.0.1|['regular']|True|['^example.org:443$']|1"),
        "the origin sees the options the script read: {}",
        out.stdout
    );
    drop(flowtap);
}
