"""flowtap's script host runtime: loads `-s` scripts and runs their hooks for the Rust worker.

The Rust binary (`script-host`) owns the gRPC session and hands events to `Host` through a
*bridge* object; `Host` answers through the same bridge. Modules:

- `scripts`: loading a script file, its addon chain, and the old-API adaptations.
- `legacy`: the objects 0.x-era hooks receive (`ScriptContext`, `OldFlow`, root layer, TCP
  message, the WSGI app registry); `legacy_http`: their requests, responses, headers and
  bodies with the 0.11-0.18 semantics; `py2`: Python 2 scripts translated on load (the
  top-level `libmproxy` and `netlib` packages give old scripts the names they import).
- `runtime`: `Host`, the event loop, per-flow ordering, the thread pool, deadlines, verdicts.
- `master`: `ctx.master` (commands, addons, shutdown).
- `logs`: routing `logging` and `ctx.log` into the proxy's log.
- `finalise`: `print()` to the console unbuffered, and Python finalised at the end.
"""

from .runtime import Host, main  # noqa: F401
