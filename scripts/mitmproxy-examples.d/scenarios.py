"""One scenario per example, in this project's words: each starts the proxy under test
(`run.start`), sends real traffic and returns an observation (JSON-able) that must be the same
for mitmdump and flowtap. `SCENARIOS` maps an example's name (relative to examples/addons or
examples/contrib) to its scenario, or to why it is not counted."""

import json
import os
import re
import socket
import subprocess
import threading
import time

from harness import REFERENCE_VENV, REPO, WORKER_VENV, Failure, Proxy
from origins import H2Origin, TcpOrigin, WsOrigin

def s_echo(path="/echo", extra=(), headers=()):
    def scenario(run):
        run.start()
        return run.curl(run.url(path), *extra, headers=headers)
    return scenario


def s_passthrough(run):
    """The example adds nothing to plain traffic (or only commands/UI): traffic is untouched."""
    run.start()
    return [run.curl(run.url("/echo")), run.curl(run.tls_url("/echo"))]


def anatomy(run):
    run.start()
    got = [run.curl(run.url(f"/{n}")) for n in range(3)]
    run.proxy.wait_for(r"We've seen 3 flows")
    return {"responses": got, "log": run.messages(r"We've seen \d+ flows")}


def add_header(run):
    run.start()
    return [run.curl(run.url(f"/{n}"), headers=("count",)) for n in range(3)]


COMMAND_HELPERS = {
    "commands-flows.py": 'from mitmproxy import ctx\n\ndef request(flow):\n'
                         '    ctx.master.commands.call("myaddon.addheader", [flow])\n',
    "commands-paths.py": 'from mitmproxy import ctx\n\ndef response(flow):\n'
                         '    ctx.master.commands.call("myaddon.histogram", [flow], "histogram.txt")\n',
    "commands-simple.py": 'from mitmproxy import ctx\n\ndef request(flow):\n'
                          '    ctx.master.commands.call("myaddon.inc")\n',
    "search.py": 'import logging\nfrom mitmproxy import ctx\n\ndef response(flow):\n'
                 '    ctx.master.commands.call("search", [flow], "hel+o")\n'
                 '    logging.info("searched: marked=%r comment=%r", flow.marked, flow.comment)\n',
    "all_markers.py": 'import logging\nfrom mitmproxy import ctx\n\ndef request(flow):\n'
                      '    try:\n        ctx.master.commands.call("all.markers")\n'
                      '    except Exception as e:\n'
                      '        logging.info("all.markers failed: %s", type(e).__name__)\n',
}


def commands(run):
    name = run.example.name
    run.start(extra_scripts=[run.helper("call_command.py", COMMAND_HELPERS[name])])
    got = [run.curl(run.url(f"/{n}")) for n in range(2)]
    observed = {"responses": got}
    if name == "commands-paths.py":
        histogram = run.work / "histogram.txt"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not histogram.exists():
            time.sleep(0.05)
        observed["file"] = histogram.read_text() if histogram.exists() else None
    if name == "commands-simple.py":
        run.proxy.wait_for(r"num = 2")
        observed["log"] = run.messages(r"num = \d+")
    if name in ("commands-flows.py", "commands-paths.py"):
        run.proxy.wait_for(r"\bdone\b", timeout=3)
        observed["log"] = run.messages(r"\bdone$")
    if name == "search.py":
        run.proxy.wait_for(r"searched: ")
        observed["log"] = run.messages(r"searched: .*")
    if name == "all_markers.py":
        run.proxy.wait_for(r"all.markers failed", timeout=3)
        observed["log"] = run.messages(r"all.markers failed: \w+")
    return observed


def contentview(run):
    """A custom view: the flow output at --flow-detail 3 shows the body through it."""
    run.start(["--flow-detail", "3"])
    got = run.curl(run.url("/example-type"))
    run.proxy.wait_for(r"hELLO wORLD")
    return {"response": got, "shown": run.messages(r"hELLO wORLD")}


def dns_query(addr, name, qtype):
    """One DNS query over UDP: (rcode, [answer rdata as hex]) or None without an answer."""
    import struct
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    query = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", qtype, 1)
    host, port = addr.split(":")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(query, (host, int(port)))
        try:
            reply, _ = sock.recvfrom(4096)
        except TimeoutError:
            return None
    _, flags, qd, an, _, _ = struct.unpack(">HHHHHH", reply[:12])
    pos = 12
    for _ in range(qd):
        while reply[pos]:
            pos += reply[pos] + 1
        pos += 5
    answers = []
    for _ in range(an):
        pos += 2 if reply[pos] & 0xC0 == 0xC0 else reply.index(b"\0", pos) - pos + 1
        _, _, _, length = struct.unpack(">HHIH", reply[pos:pos + 10])
        answers.append(reply[pos + 10:pos + 10 + length].hex())
        pos += 10 + length
    return flags & 0xF, answers


def dns_simple(run):
    run.start(["--mode", "dns@0"])
    if run.proxy.addr is None:
        return {"started": False}
    return {"started": True,
            "example.com": dns_query(run.proxy.addr, "example.com", 28),
            "example.org": dns_query(run.proxy.addr, "example.org", 28),
            "other.test": dns_query(run.proxy.addr, "other.test", 28)}


def duplicate_replay(run):
    run.start()
    first = run.curl(run.url("/original"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(s["path"] == "/changed" for s in run.origin.seen):
        time.sleep(0.05)
    time.sleep(0.5)  # a replay that replayed itself again would have been sent by now
    return {"response": first, "paths": sorted(s["path"] for s in run.origin.seen)}


def filter_flows(run):
    run.start()
    got = run.curl(run.url("/echo"))
    run.proxy.wait_for(r"Flow matches filter:")
    return {"response": got, "log": run.messages(r"Flow matches filter:")}


def modify_form(run):
    run.start()
    return [run.curl(run.url("/form"), "-d", "a=1"),
            run.curl(run.url("/form"), "-X", "POST")]


def trailers(run):
    """Over HTTP/2 (mitmproxy does not do HTTP/1.1 trailers): trailers from the origin are
    seen, and on /inject_trailers the script adds a request and a response trailer."""
    origin = H2Origin(run.cert_pair)
    try:
        run.start()
        url = f"https://127.0.0.1:{origin.port}"
        got = [run.curl(f"{url}/trailers", "--http2", headers=("x-origin-trailer",)),
               run.curl(f"{url}/inject_trailers", "--http2", "--data-binary", "abc",
                        headers=("x-origin-trailer", "x-my-injected-trailer-header"))]
        run.proxy.wait_for(r"Injected a new response trailer")
        return {"responses": got, "origin_trailers": origin.seen,
                "log": run.messages(r"(HTTP Trailers detected!|Injected a new) .*")}
    finally:
        origin.shutdown()


def io_read(run):
    """Not an addon: a program that reads a flow file. Run by plain Python against each
    package, on a file recorded by mitmdump 12.3.1 (the same file for both)."""
    flows = run.shared / "recorded.mitm"
    if not flows.exists():
        proxy = Proxy("mitmdump", str(REFERENCE_VENV / "bin" / "mitmdump"), [],
                      ["-w", str(flows)], run.work, run.env_reference)
        run.proxy = proxy
        run.curl(run.url("/recorded"))
        proxy.stop()
        (run.shared / "recorded.port").write_text(str(run.origin.port))
        run.proxy = None  # the recording proxy is not the run's: its port stays as it is
    recorded_port = (run.shared / "recorded.port").read_text()
    if run.kind == "mitmdump":
        python, env = str(REFERENCE_VENV / "bin" / "python"), dict(os.environ)
    else:
        python = str(WORKER_VENV / "bin" / "python")
        env = dict(os.environ, PYTHONPATH=str(REPO / "script-host" / "python"))
    out = subprocess.run([python, str(run.example), str(flows)], capture_output=True,
                         text=True, env=env, cwd=run.work, timeout=60)
    # The same file for both: the whole output (repr, host, get_state) must be the same.
    return {"exit": out.returncode, "output": out.stdout.replace(recorded_port, "RECORDED"),
            "errors": out.stderr[-300:]}


def io_write(run):
    out = run.work / "out.mitm"
    env_file = dict(MITMPROXY_OUTFILE=str(out))
    run.env = dict(run.env, **env_file)
    run.start()
    for n in range(16):
        run.curl(run.url(f"/w{n}"))
    run.proxy.stop()
    # Read back by mitmproxy 12.3.1 itself: the file is what a mitmproxy user would open.
    read = subprocess.run([str(REFERENCE_VENV / "bin" / "python"), "-c",
                           "import sys; from mitmproxy import io\n"
                           "fs = list(io.FlowReader(open(sys.argv[1], 'rb')).stream())\n"
                           "print(len(fs) > 0 and all(f.request.path.startswith('/w') and "
                           "f.response.status_code == 200 for f in fs))", str(out)],
                          capture_output=True, text=True)
    return {"readable_by_mitmproxy": read.stdout.strip(), "error": read.stderr[-200:]}


def log_events(run):
    run.start()
    code = run.proxy.wait_exit(10)
    # (mitmdump prints its listening line before it exits; whether the other does too is not
    # the example's point.)
    return {"exit": code,
            "log": run.messages(r"This is (some informative text|a warning|an error|an alert)")}


def nonblocking(run):
    run.start()
    started = time.monotonic()
    results = [None, None]

    def one(n):
        results[n] = run.curl(run.url(f"/nb{n}"))
    threads = [threading.Thread(target=one, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - started
    return {"responses": results, "overlapped": 4.5 < took < 9.5,
            "log": sorted(run.messages(r"(handle|start ) request: 127\.0\.0\.1/nb\d"))}


def options_configure(run):
    run.start(["--set", "addheader=42"])
    ok = run.curl(run.url("/echo"), headers=("addheader",))
    run.proxy.stop()
    refused = run.start(["--set", "addheader=101"])
    code = refused.wait_exit(15)
    # (mitmdump prints its listening line before it exits; flowtap refuses first.)
    return {"response": ok, "refused_exit": code,
            "message": run.messages(r"addheader must be <= 100")[:1]}


def options_simple(run):
    run.start(["--set", "addheader=true"])
    return [run.curl(run.url(f"/{n}"), headers=("count",)) for n in range(2)]


def shutdown(run):
    run.start()
    before = run.curl(run.url("/echo"))
    run.curl("http://example.com/path")
    code = run.proxy.wait_exit(15)
    return {"before": before, "exited": code is not None,
            "log": run.messages(r"Shutting down everything")}


def connect(proxy_addr, target):
    host, port = proxy_addr.split(":")
    sock = socket.create_connection((host, int(port)), timeout=15)
    sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    reply = b""
    while b"\r\n\r\n" not in reply:
        chunk = sock.recv(1)
        if not chunk:
            raise Failure("the proxy closed the CONNECT")
        reply += chunk
    if b" 200" not in reply.split(b"\r\n")[0]:
        raise Failure(f"CONNECT refused: {reply[:60]!r}")
    return sock


def tcp_simple(run):
    tcp = TcpOrigin()
    try:
        run.start(["--tcp-hosts", ".*"])
        sock = connect(run.proxy.addr, f"127.0.0.1:{tcp.port}")
        sock.sendall(b"foo")
        reply = b""
        while len(reply) < 7:
            chunk = sock.recv(100)
            if not chunk:
                break
            reply += chunk
        sock.close()
        run.proxy.wait_for(r"from_client=False")
        return {"reply": reply.decode("latin-1"),
                "log": run.messages(r"tcp_message\[from_client=\w+\), content=\w+\]")}
    finally:
        tcp.shutdown()


def ws_client(run, ws, sends, until, seconds=5.0):
    from websockets.sync.client import connect as ws_connect
    sock = connect(run.proxy.addr, f"127.0.0.1:{ws.port}")
    received = []
    with ws_connect(f"ws://127.0.0.1:{ws.port}/", sock=sock) as conn:
        for message in sends:
            conn.send(message)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                message = conn.recv(timeout=max(0.05, deadline - time.monotonic()))
            except TimeoutError:
                break
            received.append(message if isinstance(message, str) else message.decode())
            if until(received):
                break
    return received


def websocket_simple(run):
    ws = WsOrigin()
    try:
        run.start()
        got = ws_client(run, ws, ["Hello one", "FOOBAR two", "last"],
                        lambda r: "last" in r)
        # The greeting and the client's first message cross: their hooks' order is not fixed.
        return {"received": got,
                "log": sorted(run.messages(r"(Client|Server) sent a message: .*"))}
    finally:
        ws.shutdown()


def websocket_inject(run):
    ws = WsOrigin()
    try:
        run.start()
        got = ws_client(run, ws, ["a secret", "plain"],
                        lambda r: "plain" in r and "ssssssh" in r
                        and any(m.startswith("hello from") for m in r), seconds=6)
        return {"greeting": "Hello greeting" in got, "echoed_plain": "plain" in got,
                "secret_reached_server": "a secret" in got,
                "injected_reply": "ssssssh" in got,
                "periodic": any(m == "hello from mitmproxy! " for m in got)}
    finally:
        ws.shutdown()


def wsgi_flask(run):
    run.start()
    return [run.curl("http://example.com/"), run.curl(run.url("/echo"))]


def block_doh(run):
    run.start()
    return [run.curl(run.url("/echo")), run.curl(run.url("/dns-query")),
            run.curl(run.url("/resolve?dns=AAAA")),
            run.curl(run.url("/x"), "-H", "Content-Type: application/dns-message",
                     "--data-binary", "q")]


def tls_echo(run):
    run.start()
    return [run.curl(run.tls_url("/echo")), run.curl(run.url("/echo"))]


def custom_next_layer(run):
    run.start()
    got = run.curl(run.tls_url("/echo"))
    return {"response": got, "logged_context": bool(run.messages(r"nextlayer.context="))}


def dns_spoofing(run):
    # A reverse proxy to the wrong server (a raw TCP echo, which answers no HTTP); the Host
    # header names the real origin: only the script's rerouting reaches it.
    wrong = TcpOrigin()
    try:
        run.start(["--mode", f"reverse:http://127.0.0.1:{wrong.port}",
                   "--set", "keep_host_header=true"])
        return run.curl(f"http://{run.proxy.addr}/echo", "--noproxy", "*",
                        "-H", f"Host: 127.0.0.1:{run.origin.port}")
    finally:
        wrong.shutdown()


def domain_fronting(run):
    config = run.work / "fronting.json"
    config.write_text(json.dumps({"mappings": [
        {"patterns": ["secret.example"], "server": "127.0.0.1", "host": "front.example"},
        {"patterns": ["*.wild.example"], "server": "127.0.0.1"}]}))
    run.start(["--set", f"domainfrontingfile={config}"])
    return [run.curl(run.tls_url("/echo"), "-H", "Host: secret.example"),
            run.curl(run.tls_url("/echo"), "-H", "Host: a.wild.example"),
            run.curl(run.tls_url("/echo"))]


def cookies(run):
    (run.work / "cookies.json").write_text(json.dumps([{"name": "injected", "value": "yes"}]))
    run.start()
    return run.curl(run.url("/cookies"), "-H", "Cookie: mine=1", headers=("set-cookie",))


def httpdump(run):
    run.start(["--set", "open_browser=false", "--set", "dumper_folder=dumped"])
    got = [run.curl(run.url("/html/page")), run.curl(run.url("/echo"))]
    deadline = time.monotonic() + 5
    files = []
    while time.monotonic() < deadline:
        files = sorted((run.work / "dumped").rglob("*"))
        if len([f for f in files if f.is_file()]) >= 2:
            break
        time.sleep(0.05)
    listing = sorted(re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "ID", str(f.relative_to(run.work)))
                     for f in files if f.is_file())
    contents = sorted(f.read_text(errors="replace") for f in files if f.is_file())
    return {"responses": got, "files": listing, "contents": contents}


def jsondump(run):
    out = run.work / "dump.jsonl"
    run.start(["--set", f"dump_destination={out}"])
    got = run.curl(run.url("/echo"), "-d", "x=1")
    run.proxy.stop()
    frames = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []

    def shape(value, depth=0):
        if isinstance(value, dict) and depth < 2:
            return {k: shape(v, depth + 1) for k, v in sorted(value.items())}
        return type(value).__name__

    return {"response": got, "frames": len(frames),
            "request": [(f["request"]["method"], f["request"]["path"],
                         f["request"]["content"]) for f in frames],
            "response_content": [f["response"]["content"][:20] for f in frames],
            "shape": shape(frames[0]) if frames else None}


def iframe(run):
    run.start(["--set", "iframe=http://inject.example/"])
    return run.curl(run.url("/html"))


def portfile(run):
    datadir = run.work / "data"
    datadir.mkdir()
    run.start(["--set", f"datadir={datadir}"])
    path = datadir / "portfile"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not path.exists():
        time.sleep(0.05)
    port = int(run.proxy.addr.rsplit(":", 1)[1])
    data = json.loads(path.read_text()) if path.exists() else None
    return {"portfile": data and {k: ("the listen port" if v == port else v)
                                  for k, v in data.items()}}


def save_streamed(run):
    run.start(["--set", "stream_large_bodies=1", "--set",
               f"save_streamed_data={run.work}/streams/%+D"])
    got = run.curl(run.url("/echo-unframed"), "--data-binary", "request-body")
    run.proxy.stop()
    streams = run.work / "streams"
    return {"response": got,
            "files": {f.name: f.read_text() for f in sorted(streams.glob("*"))}
            if streams.exists() else None}


def sslstrip(run):
    run.start()
    return run.curl(run.url("/sslstrip"),
                    headers=("location", "strict-transport-security",
                             "content-security-policy", "set-cookie"))


def tls_passthrough(run):
    run.start()
    first = run.curl(run.tls_url("/echo"))  # -k: intercepted
    # Trusting only the origin's certificate: fails against the proxy's, which the strategy
    # records; the third connection is then passed through and reaches the origin itself.
    second = run.curl(run.tls_url("/echo"), "--cacert", str(run.cert), insecure=False)
    third = run.curl(run.tls_url("/echo"), "--cacert", str(run.cert), insecure=False)
    run.proxy.wait_for(r"TLS passthrough")
    return {"responses": [first, second, third],
            "log": [re.sub(r":\d+", ":PORT", m) for m in
                    run.messages(r"TLS (passthrough|handshake successful|handshake failed): "
                                 r"127\.0\.0\.1:\d+")]}


def upstream_pac(run):
    run.origin.pac_proxy = run.origin.port
    run.start(["--set", f"pac_url={run.url('/pac')}"])
    got = run.curl("http://pac-target.example/page")
    # Through the upstream proxy the PAC names (the origin): mitmdump tunnels with CONNECT,
    # another proxy may send the absolute form; either way the upstream saw the target and
    # the page came back.
    return {"status": got.get("status"), "page": "/page" in got.get("body", ""),
            "via_upstream": any("pac-target.example" in s["path"] for s in run.origin.seen),
            "log": [re.sub(r":\d+", ":PORT", m) for m in
                    run.messages(r"Using proxy \S+ for \S+")]}


def xss_scanner(run):
    run.start()
    got = run.curl(run.url("/xss?q=hello"))
    run.proxy.wait_for(r"===== XSS Found ====", timeout=15)
    return {"response": got,
            "log": [re.sub(r":\d+", ":PORT", m) for m in
                    run.messages(r"(===== (XSS|SQLi) Found =+|XSS URL: \S+|Injection Point: .*)")]}


WEBSCANNER = {
    "mapping.py": """
import sys, pathlib
sys.path.insert(0, {root!r})
from examples.contrib.webscanner_helper.mapping import MappingAddon
mapping = pathlib.Path("mapping.json")
mapping.write_text('{{"http://127.0.0.1:{port}/html": {{"p": "mapped text"}}}}')
addons = [MappingAddon(str(mapping))]
""",
    "urlindex.py": """
import sys
sys.path.insert(0, {dir!r})
from urlindex import UrlIndexAddon
addons = [UrlIndexAddon("index.json")]
""",
    "urlinjection.py": """
import sys, json
sys.path.insert(0, {dir!r})
from urlinjection import UrlInjectionAddon, HTMLInjection
json.dump({{"http://seen.example:80": {{"/a": {{"GET": [200]}}}}}}, open("index.json", "w"))
addons = [UrlInjectionAddon("~u /missing", "index.json", HTMLInjection())]
""",
}


def webscanner(run):
    """The webscanner_helper modules are addon classes, not scripts: a two-line script of
    this harness makes one (as the module's docstring shows) and loads it."""
    name = run.example.name
    text = WEBSCANNER[name].format(root=str(run.example.parents[3]), dir=str(run.example.parent),
                                   port=run.origin.port)
    run.start(scripts=[run.helper(f"use_{name}", text)])
    if name == "mapping.py":
        return run.curl(run.url("/html"))
    if name == "urlindex.py":
        got = [run.curl(run.url("/html")), run.curl(run.url("/missing"))]
        run.proxy.stop()
        index = run.work / "index.json"
        data = json.loads(index.read_text()) if index.exists() else None
        return {"responses": got, "index": json.loads(
            json.dumps(data).replace(str(run.origin.port), "PORT")) if data else None}
    return [run.curl(run.url("/missing")), run.curl(run.url("/html"))]


def link_expander(run):
    run.start()
    return run.curl(run.url("/html/dir/page"))


def check_ssl_pinning(run):
    run.start()
    return [run.curl(run.tls_url("/echo")), run.curl(run.url("/echo"))]


# name -> scenario, or a string: why the example is not counted.
SCENARIOS = {
    # examples/addons
    "anatomy.py": anatomy,
    "anatomy2.py": s_echo(),
    "commands-flows.py": commands,
    "commands-paths.py": commands,
    "commands-simple.py": commands,
    "contentview-interactive.py": s_passthrough,
    "contentview.py": contentview,
    "dns-simple.py": dns_simple,
    "duplicate-modify-replay.py": duplicate_replay,
    "filter-flows.py": filter_flows,
    "http-add-header.py": add_header,
    "http-modify-form.py": modify_form,
    "http-modify-query-string.py": s_echo("/q?a=1"),
    "http-redirect-requests.py": lambda run: (
        run.start(["--mode", f"upstream:http://127.0.0.1:{run.origin.port}"]),
        [run.curl("http://example.org/page"), run.curl("http://example.net/page")])[1],
    "http-reply-from-proxy.py": lambda run: (
        run.start(), [run.curl("http://example.com/path", headers=("content-type",)),
                      run.curl(run.url("/echo"))])[1],
    "http-stream-modify.py": s_echo("/chunked"),
    "http-stream-simple.py": lambda run: (run.start(), [run.curl(run.url("/chunked")),
                                                        run.curl(run.url("/big"))])[1],
    "http-trailers.py": trailers,
    "internet-in-mirror.py": s_echo("/html"),
    "io-read-saved-flows.py": io_read,
    "io-write-flow-file.py": io_write,
    "log-events.py": log_events,
    "nonblocking.py": nonblocking,
    "options-configure.py": options_configure,
    "options-simple.py": options_simple,
    "shutdown.py": shutdown,
    "tcp-simple.py": tcp_simple,
    "websocket-inject-message.py": websocket_inject,
    "websocket-simple.py": websocket_simple,
    "wsgi-flask-app.py": wsgi_flask,
    # examples/contrib
    "all_markers.py": commands,
    "block_dns_over_https.py": block_doh,
    "change_upstream_proxy.py": "broken on mitmdump 12.3.1: `flow.server_conn.via` is None "
                                "outside upstream mode, so every request hook raises TypeError "
                                "(flowtap the same)",
    "check_ssl_pinning.py": check_ssl_pinning,
    "custom_next_layer.py": custom_next_layer,
    "dns_spoofing.py": dns_spoofing,
    "domain_fronting.py": domain_fronting,
    "har_dump.py": s_passthrough,
    "http_manipulate_cookies.py": cookies,
    "httpdump.py": httpdump,
    "jsondump.py": jsondump,
    "link_expander.py": link_expander,
    "mitmproxywrapper.py": "no addon: a command-line wrapper that sets the proxy settings of "
                           "macOS (networksetup, sudo) and runs mitmproxy",
    "modify_body_inject_iframe.py": iframe,
    "ntlm_upstream_proxy.py": "does not load on mitmdump 12.3.1: imports "
                              "HttpConnectUpstreamHook, gone from mitmproxy.proxy.layers.http "
                              "(flowtap: no mitmproxy.net.http.http1 either)",
    "portfile.py": portfile,
    "remote-debug.py": "attaches to a PyCharm debug server on localhost:5678 at load "
                       "(pydevd_pycharm); there is none, and it is no proxy behaviour",
    "save_streamed_data.py": save_streamed,
    "search.py": commands,
    "sslstrip.py": sslstrip,
    "suppress_error_responses.py": "does not load on mitmdump 12.3.1: imports "
                                   "HttpSyntaxException, gone from mitmproxy.exceptions "
                                   "(flowtap the same)",
    "tls_passthrough.py": tls_passthrough,
    "upstream_pac.py": upstream_pac,
    "xss_scanner.py": xss_scanner,
    "webscanner_helper/__init__.py": "no addon: the package's empty __init__",
    "webscanner_helper/urldict.py": "no addon: a dictionary class that mapping.py uses "
                                    "(exercised there)",
    "webscanner_helper/mapping.py": "broken on mitmdump 12.3.1: its configure() indexes the "
                                    "`updated` set (TypeError at start-up; flowtap the same)",
    "webscanner_helper/urlindex.py": webscanner,
    "webscanner_helper/urlinjection.py": webscanner,
    "webscanner_helper/proxyauth_selenium.py": "drives a Firefox through selenium's "
                                               "webdriver: no browser here",
    "webscanner_helper/watchdog.py": "does not load on mitmdump 12.3.1: imports "
                                     "mitmproxy.connections (gone since mitmproxy 7)",
}
