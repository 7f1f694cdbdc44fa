"""`mitmproxy.script`: the `@concurrent` decorator.

flowtap already runs sync hooks of different flows concurrently on a thread pool, so
`@concurrent` changes nothing by default; it is accepted, and checked as mitmproxy checks it.
Under `--set script_serial=true` a `@concurrent` hook still runs outside the one-at-a-time
lock, as it runs outside mitmproxy's event loop.
"""

from .hooks import all_hooks

_OLD_HOOKS = {"start", "tick", "clientconnect", "clientdisconnect", "serverconnect",
              "serverdisconnect", "websockets_handshake", "websocket_handshake", "log"}


def concurrent(fn):
    name = fn.__name__
    if name in ("load", "configure"):
        raise NotImplementedError(f"Concurrent decorator not supported for '{name}' method.")
    if name not in all_hooks and name not in _OLD_HOOKS:
        raise NotImplementedError(f"Concurrent decorator not supported for '{name}' method.")
    fn.__flowtap_concurrent__ = True
    return fn
