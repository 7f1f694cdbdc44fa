"""The two proxies under test and what a scenario is given (`Run`): starting mitmdump or
flowtap on 127.0.0.1 port 0 with scripts, curl through it, the output lines' messages."""

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("FLOWTAP_CACHE", Path.home() / ".cache" / "flowtap")) / "mitmproxy-examples"
REFERENCE_VENV = CACHE / "mitmproxy-12.3.1"
WORKER_VENV = CACHE / "worker-venv"
# How long a proxy may take to start, stop or answer.
WAIT = 30.0


class Proxy:
    """mitmdump or flowtap on 127.0.0.1, port 0, with the given scripts and arguments."""

    LISTENING = re.compile(r"listening at (?:http://)?(127\.0\.0\.1:\d+)")

    def __init__(self, kind, binary, scripts, args, cwd, env):
        self.kind = kind
        command = [binary, "--listen-host", "127.0.0.1", "-p", "0", "-k",
                   "--set", f"confdir={cwd / 'confdir'}"]
        for script in scripts:
            command += ["-s", str(script)]
        command += args
        self.proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, errors="replace")
        self.lines = []
        self.readers = [self._reader(self.proc.stdout), self._reader(self.proc.stderr)]
        self.addr = None
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline and self.addr is None:
            for line in list(self.lines):
                if m := self.LISTENING.search(line):
                    self.addr = m.group(1)
                    break
            else:
                if self.proc.poll() is not None:
                    for reader in self.readers:
                        reader.join(5)
                    break
                time.sleep(0.02)

    def _reader(self, pipe):
        def read():
            for line in pipe:
                self.lines.append(line.rstrip("\n"))
        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        return thread

    def wait_for(self, pattern, timeout=10.0):
        """Polls the output for a line matching `pattern` until the deadline; True if found."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(rx.search(line) for line in list(self.lines)):
                return True
            time.sleep(0.05)
        return False

    def wait_exit(self, timeout=WAIT):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        """SIGINT, as at a terminal (both run `done` then), then the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for reader in self.readers:
            reader.join(5)
        return self.proc.returncode


# A log line's prefix and suffix, which are not what an example is about: mitmdump's
# `[HH:MM:SS.mmm]` (and `[client address]`), flowtap's operational-log timestamp and level
# and its ` script=PATH`.
LINE_PREFIX = re.compile(r"^(\[\d\d:\d\d:\d\d\.\d+\](\[[^\]]*\])? ?|\S+Z\s+[A-Z]+\s+)")
LINE_SUFFIX = re.compile(r" script=\S+$")


def message(line):
    return LINE_SUFFIX.sub("", LINE_PREFIX.sub("", line))


class Failure(Exception):
    pass


class Run:
    """One scenario through one proxy: what a scenario function is given."""

    def __init__(self, kind, binary, example, work, origins, env):
        self.kind, self.binary, self.example, self.work = kind, binary, example, work
        self.origin, self.tls_origin, self.cert = origins
        self.env = env
        self.proxy = None

    def start(self, args=(), scripts=None, extra_scripts=()):
        scripts = [self.example] if scripts is None else scripts
        self.proxy = Proxy(self.kind, self.binary, [*scripts, *extra_scripts], list(args),
                           self.work, self.env)
        return self.proxy

    def url(self, path):
        return f"http://127.0.0.1:{self.origin.port}{path}"

    def tls_url(self, path):
        return f"https://127.0.0.1:{self.tls_origin.port}{path}"

    def curl(self, url, *extra, headers=(), insecure=True):
        """curl through the proxy: {status, the named response headers, body} or {failed}.
        `insecure`: trust any certificate (-k), as the proxies mint theirs."""
        if self.proxy is None or self.proxy.addr is None:
            raise Failure(f"{self.kind} did not start: {self.proxy and self.proxy.lines[-5:]}")
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        out = subprocess.run(["curl", "-sS", "--max-time", "30", *(["-k"] if insecure else []), "-x",
                              f"http://{self.proxy.addr}", "-D", "-", "-o", "-", *extra, url],
                             capture_output=True, env=env)
        if out.returncode != 0:
            # No response at all (killed flow, closed connection): which error does not matter.
            return {"failed": True, "status": None}
        raw = out.stdout
        head, _, body = raw.partition(b"\r\n\r\n")
        while re.match(rb"HTTP/\S+ 1\d\d", head) or head.startswith(b"HTTP/1.1 200 Connection"):
            head, _, body = body.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        got = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() in headers:
                got.setdefault(name.strip().lower(), []).append(value.strip())
        return {"status": status, "headers": got, "body": body.decode("latin-1")}

    def messages(self, pattern):
        """The output lines' messages matching `pattern` (the match, not the line's prefix)."""
        rx = re.compile(pattern)
        return [m.group(0) for line in list(self.proxy.lines)
                if (m := rx.search(message(line)))]

    def helper(self, name, text):
        """A small script of this harness (not an example), loaded after the example."""
        path = self.work / name
        path.write_text(text)
        return path
