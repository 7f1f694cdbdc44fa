"""The worker's console and its end: `print()` as mitmdump shows it, and Python finalised.

mitmdump runs scripts in its own process, so what they print reaches its standard output at
once, between the flow lines. A worker that a proxy spawned writes to that proxy's standard
output (see script-client's `spawn`); `console()` makes `sys.stdout` unbuffered, so that a
line a hook printed is written before the hook's reply leaves, and so before the proxy prints
that flow's line.

The worker process ends with `exit()` from Rust, not with the interpreter's own shutdown: a
script's thread stuck in a call could hold that up without end. `finalise()` does what the
interpreter's shutdown would have done for the script's data, once the `done` hooks ran: the
`atexit` handlers, then every file object still open flushed and closed (a `flowwriter`-style
script that never closes its file keeps every flow), then the standard streams flushed.
"""

import atexit
import gc
import io
import logging
import sys

# The worker's own log (stderr), see `logs.OPERATIONAL`.
log = logging.getLogger("flowtap.worker")


def console():
    """Replaces `sys.stdout` by an unbuffered writer on the same descriptor (same encoding)."""
    out = sys.stdout
    try:
        fd = out.fileno()
        raw = io.FileIO(fd, "w", closefd=False)
    except (AttributeError, OSError, ValueError):
        return  # no usable descriptor 1: leave Python's default alone
    sys.stdout = io.TextIOWrapper(
        raw,
        encoding=getattr(out, "encoding", None) or "utf-8",
        errors="backslashreplace",
        write_through=True,
    )


def _rank(stream):
    """Close order: wrappers before what they wrap (a gzip file before its file, text before
    its buffer before its raw file)."""
    if isinstance(stream, io.TextIOBase):
        return 1
    if isinstance(stream, io.BufferedIOBase):
        return 2 if type(stream).__module__ in ("_io", "io") else 0
    if isinstance(stream, io.RawIOBase):
        return 3
    return 0


def _is_console(stream):
    if stream in (sys.stdin, sys.stdout, sys.stderr, sys.__stdin__, sys.__stdout__,
                  sys.__stderr__):
        return True
    try:
        return stream.fileno() in (0, 1, 2)
    except Exception:
        return False


def open_files():
    """File objects still open, in the order to close them."""
    found = []
    for obj in gc.get_objects():
        try:
            if isinstance(obj, io.IOBase) and not obj.closed and not _is_console(obj):
                found.append(obj)
        except Exception:
            continue
    found.sort(key=_rank)
    return found


_finalised = False


def finalise():
    """Runs the `atexit` handlers, closes the files scripts left open, flushes stdout/stderr;
    once (later calls do nothing). Never raises: each step's failure is logged and the next
    step runs. Call it before the Rust side is told the host finished: the process may end
    at once after that."""
    global _finalised
    if _finalised:
        return
    _finalised = True
    try:
        atexit._run_exitfuncs()
    except Exception:
        log.exception("script host: an atexit handler failed")
    # The host's own tasks (watchdog, file watcher) are left pending on the closed loop on
    # purpose: collecting them is no error worth a log line.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    gc.collect()
    for stream in open_files():
        try:
            stream.flush()
        except Exception:
            pass
    for stream in open_files():
        try:
            stream.close()
        except Exception as e:
            log.warning(
                "script host: closing %r at exit failed: %s", stream, e)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
