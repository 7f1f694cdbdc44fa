"""One `-s` script: importing it, its addon chain, and its hooks adapted to the modern API.

A script file is imported as mitmproxy imports it (module `__mitmproxy_script__.<stem>`, its
directory on sys.path while it is imported). The module is the first addon; objects in an
`addons` list follow depth-first. Hooks of every era are recognised by name and signature and
wrapped into handlers that take the modern argument (see `OLD_HOOKS` and `_adapt`).
"""

import importlib.machinery
import importlib.util
import inspect
import os
import shlex
import sys
import traceback
import types

from mitmproxy import exceptions, hooks
from mitmproxy.addonmanager import Loader
from mitmproxy.proxy.server_hooks import ServerConnectionHookData

from . import legacy, py2

_HOST_DIRS = (os.path.dirname(__file__),)

# Old hook name -> the modern hook it runs at.
OLD_HOOKS = {
    "clientconnect": "client_connected",
    "clientdisconnect": "client_disconnected",
    "serverconnect": "server_connect",
    "serverdisconnect": "server_disconnected",
    "websockets_handshake": "request",
    "websocket_handshake": "request",
    "log": "add_log",
}
_ONE_ARG = set(hooks.all_hooks) - {"load", "configure", "running", "done"}


class Handler:
    """A hook implementation taking the modern argument(s); `is_async` if it returns a coroutine;
    `concurrent` if marked `@concurrent` (it runs outside `script_serial`, as in mitmproxy)."""

    __slots__ = ("fn", "is_async", "script", "label", "concurrent")

    def __init__(self, fn, is_async, script, label, concurrent=False):
        self.fn, self.is_async, self.script, self.label = fn, is_async, script, label
        self.concurrent = concurrent


def split_spec(spec):
    """`"x.py arg1 arg2"` -> (path, [args]) as 0.x mitmproxy read `-s`."""
    parts = shlex.split(spec) if " " in spec.strip() else [spec.strip()]
    path = os.path.expanduser(parts[0].strip("'\" "))
    return path, parts[1:]


def format_traceback(exc):
    """The traceback of `exc` without the host's own frames at its top (and, as `logging`
    formats one, without the final newline)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_HOST_DIRS):
        tb = tb.tb_next
    # Importing a module: importlib's frames up to the module's own are cut, as mitmproxy
    # cuts them (addonmanager.cut_traceback).
    cut = tb
    while cut is not None:
        if cut.tb_frame.f_code.co_name == "_call_with_frames_removed":
            tb = cut.tb_next
            break
        cut = cut.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb)).rstrip("\n")


class LoadHookError(Exception):
    """An exception raised by a script's `load` hook (`original`): mitmdump reports it as an
    addon error, not as an error in the script file."""

    def __init__(self, original):
        super().__init__(str(original))
        self.original = original


def _arity(fn):
    """Number of positional parameters, or None when it takes *args (call it the modern way)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    count = 0
    for p in sig.parameters.values():
        if p.kind == p.VAR_POSITIONAL:
            return None
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            count += 1
    return count


def _is_async(fn):
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)
    )


def _adapt(fn, make_args, after=None):
    """Wraps `fn` so that it takes the modern argument; `after(args)` runs once it returned."""
    if _is_async(fn):
        async def handler(*modern):
            args = make_args(*modern)
            result = await fn(*args)
            if after:
                after(args)
            return result
    else:
        def handler(*modern):
            args = make_args(*modern)
            result = fn(*args)
            if after:
                after(args)
            return result
    return handler


class Script:
    """A loaded (or failed) script file and the handlers of its addon chain."""

    def __init__(self, host, spec):
        self.host = host
        self.spec = spec
        self.path, self.args = split_spec(spec)
        self.name = self.path
        self.module = None
        self.chain = []
        self.handlers = {}
        self.context = None
        self.mtime = self._stat()
        self.commands = {}

    def _stat(self):
        try:
            return os.stat(self.path).st_mtime
        except OSError:
            return None

    def changed_on_disk(self):
        mtime = self._stat()
        if mtime is not None and mtime != self.mtime:
            self.mtime = mtime
            return True
        return False

    @property
    def loaded(self):
        return self.module is not None

    # -- loading -------------------------------------------------------------------------------

    def load(self, options):
        """Imports the file, runs `start`/`load` and builds the handler table. Raises on error."""
        if not os.path.isfile(self.path):
            raise exceptions.OptionsError(f"No such script: {self.path}")
        self.module = None
        module = self._import()
        self.context = legacy.ScriptContext(self.host, self)
        root = self._start(module)
        self.chain = list(self._walk(root))
        loader = Loader(options, self.commands)
        for addon in self.chain:
            fn = getattr(addon, "load", None)
            if callable(fn) and not isinstance(fn, types.ModuleType):
                if _is_async(fn):
                    raise exceptions.AddonManagerError(
                        f"Async handler {self.name}.load cannot be called from sync context"
                    )
                try:
                    fn(loader)
                except Exception as e:
                    raise LoadHookError(e) from e
            for attr in dir(addon):
                member = getattr(addon, attr, None)
                name = getattr(member, "command_name", None)
                if name and callable(member):
                    self.commands[name] = member
        self.handlers = self._build_handlers()
        self.module = module

    def _import(self):
        stem = os.path.splitext(os.path.basename(self.path))[0]
        modname = f"__mitmproxy_script__.{stem}"
        sys.modules.pop(modname, None)
        directory = os.path.dirname(os.path.abspath(self.path))
        # As mitmproxy loads it: the path as given (spec_from_file_location would make it
        # absolute), so that tracebacks name the file as the user did.
        loader = importlib.machinery.SourceFileLoader(modname, self.path)
        spec = importlib.util.spec_from_loader(modname, loader=loader)
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, directory)
        try:
            code = py2.compile_script(self.path)
            if code is None:
                spec.loader.exec_module(module)
            else:
                py2.prepare_module(module)
                exec(code, module.__dict__)
        finally:
            try:
                sys.path.remove(directory)
            except ValueError:
                pass
        sys.modules[modname] = module
        if not hasattr(module, "name"):
            module.name = self.path
        return module

    def _start(self, module):
        """Runs an old-API `start`; its return value (1.x era) replaces the module as addon."""
        start = getattr(module, "start", None)
        if not callable(start):
            return module
        argv = [self.path] + self.args
        arity = _arity(start)
        if arity == 2:
            start(self.context, argv)
        elif arity == 1:
            start(self.context)
        else:
            saved, sys.argv = sys.argv, argv
            try:
                result = start()
            finally:
                sys.argv = saved
            if result is not None:
                return result
        return module

    def _walk(self, addon):
        yield addon
        for child in getattr(addon, "addons", None) or []:
            yield from self._walk(child)

    # -- handlers ------------------------------------------------------------------------------

    def _build_handlers(self):
        table = {}
        for addon in self.chain:
            label = getattr(addon, "name", None) or type(addon).__name__.lower()
            for name in list(OLD_HOOKS) + list(hooks.all_hooks) + ["tick"]:
                if name == "load":
                    continue
                fn = getattr(addon, name, None)
                if fn is None or isinstance(fn, types.ModuleType):
                    continue
                if not callable(fn):
                    if name in OLD_HOOKS or name == "tick":
                        continue
                    raise exceptions.AddonManagerError(f"Addon handler {name} ({fn!r}) not callable")
                hook, handler = self._adapt(name, fn)
                if handler is not None:
                    table.setdefault(hook, []).append(
                        Handler(handler, _is_async(fn), self, f"{label}.{name}",
                                getattr(fn, "__flowtap_concurrent__", False))
                    )
                if name == "request" and self.context is not None and _arity(fn) == 2:
                    # 0.11-0.15 in upstream mode passed the CONNECT request through `request`
                    # too (it went to the next proxy as a request); mitmproxy 12 has
                    # `http_connect` for it.
                    table.setdefault("http_connect", []).append(
                        Handler(_adapt_filtered(fn, self._old_upstream_connect), _is_async(fn),
                                self, f"{label}.{name}",
                                getattr(fn, "__flowtap_concurrent__", False))
                    )
        if self.context is not None and self.context.app_registry.apps:
            # 0.x `context.app_registry`: its apps answer before the script's own hooks.
            table.setdefault("request", []).insert(
                0, Handler(self.context.app_registry.serve, False, self, "app_registry"))
        return table

    def _adapt(self, name, fn):
        ctx = self.context
        arity = _arity(fn)
        old = arity == 2 and name in _ONE_ARG | set(OLD_HOOKS)  # (context, x): 0.x era
        if name in ("clientconnect", "clientdisconnect"):
            pre = (ctx,) if arity == 2 else ()
            return OLD_HOOKS[name], _adapt(fn, lambda client: pre + (legacy.RootLayer(client),))
        if name in ("serverconnect", "serverdisconnect"):
            pre = (ctx,) if arity == 2 else ()
            wrap = legacy.OldConn if arity == 2 else (lambda server: server)
            return OLD_HOOKS[name], _adapt(fn, lambda data: pre + (wrap(data.server),))
        if name in ("websockets_handshake", "websocket_handshake"):
            def only_ws(flow):
                return (flow,) if legacy.is_websocket_handshake(flow) else None
            return "request", _adapt_filtered(fn, only_ws)
        if name == "log":
            return "add_log", fn
        if name == "configure":
            if arity == 2:
                return "configure", _adapt(fn, lambda updated: (self.host.options, updated))
            return "configure", fn
        if name == "done":
            if arity == 1:
                return "done", _adapt(fn, lambda: (ctx,))
            return "done", fn
        if name == "tcp_message" and old:
            return "tcp_message", _adapt(
                fn, lambda flow: (ctx, legacy.TcpMessage(flow)), lambda args: args[1].apply()
            )
        if old and name == "request":
            def unless_own_replay(flow):
                if legacy.skip_own_replay(ctx, flow):
                    return None
                legacy.persistent_upstream(ctx, flow)
                return ctx, legacy.old_arg(flow, ctx)
            return name, _adapt_filtered(fn, unless_own_replay)
        if old:
            return name, _adapt(fn, lambda arg: (ctx, legacy.old_arg(arg, ctx)))
        return name, fn

    def _old_upstream_connect(self, flow):
        """The arguments of an old `request` hook for a CONNECT flow, in upstream mode only."""
        if legacy.upstream_mode(flow) is None:
            return None
        legacy.persistent_upstream(self.context, flow)
        return self.context, legacy.old_arg(flow, self.context)

    def hook_names(self):
        """The modern hook names this script implements."""
        return set(self.handlers)


def _adapt_filtered(fn, make_args):
    """Like `_adapt`, but skips the call when `make_args` returns None."""
    if _is_async(fn):
        async def handler(arg):
            args = make_args(arg)
            if args is not None:
                return await fn(*args)
    else:
        def handler(arg):
            args = make_args(arg)
            if args is not None:
                return fn(*args)
    return handler


def server_hook_data(client, server):
    return ServerConnectionHookData(server=server, client=client)
