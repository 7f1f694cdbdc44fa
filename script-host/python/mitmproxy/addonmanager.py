"""`mitmproxy.addonmanager`: the addon chain, the `Loader` given to `load`, and `LoadHook`.

In flowtap's worker the script host runs the chain itself (`flowtap_host`); `AddonManager` is
the plain-Python one that `mitmproxy.master.Master` and `mitmproxy.test.taddons` use, with
mitmproxy's semantics: `add` runs `load`, sub-addons (`addons = [...]`) are traversed, an
exception in a hook is logged (not raised) unless it is AddonHalt or OptionsError.
"""

import asyncio
import contextlib
import inspect
import logging
import pprint
import sys
import traceback
import types

from mitmproxy import exceptions, flow, hooks

logger = logging.getLogger(__name__)

LoadHook = hooks.hooks_of(__name__)["LoadHook"]


def _get_name(addon):
    return getattr(addon, "name", addon.__class__.__name__.lower())


def cut_traceback(tb, func_name):
    """The traceback from the frame after the one running `func_name` (all of it if none)."""
    original = tb
    for _, _, name, _ in traceback.extract_tb(tb):
        tb = tb.tb_next
        if name == func_name:
            break
    return tb or original


@contextlib.contextmanager
def safecall():
    """Logs an exception of the block as an addon error (AddonHalt and OptionsError pass)."""
    try:
        yield
    except (exceptions.AddonHalt, exceptions.OptionsError):
        raise
    except Exception:
        etype, value, tb = sys.exc_info()
        tb = cut_traceback(cut_traceback(tb, "invoke_addon_sync"), "invoke_addon")
        logger.error(f"Addon error: {value}", exc_info=(etype, value, tb))


class Loader:
    """Given to `load(loader)`: registers options and commands for the addon.

    `Loader(master)` as in mitmproxy; the script host also builds `Loader(options, commands)`
    with a dict of commands.
    """

    def __init__(self, master, commands=None):
        if hasattr(master, "options") and commands is None:
            self.master = master
            self._options = master.options
            self._commands = None
        else:
            self.master = None
            self._options = master
            self._commands = commands if commands is not None else {}

    def add_option(self, name, typespec, default, help, choices=None):
        if isinstance(choices, str):
            raise ValueError("choices must be a sequence of strings")
        if name in self._options:
            existing = self._options._options[name]
            if (existing.default, existing.help, existing.choices) != (
                    default, help, list(choices) if choices else None):
                logger.warning(f"Over-riding existing option {name}")
        self._options.add_option(name, typespec, default, help, choices)

    def add_command(self, path, func):
        if self._commands is None:
            self.master.commands.add(path, func)
        else:
            self._commands[path] = func


def traverse(chain):
    """Every addon of `chain` and, after each, its sub-addons (depth first)."""
    for addon in chain:
        yield addon
        if hasattr(addon, "addons"):
            yield from traverse(addon.addons)


_REMOVED_EVENTS = {
    "clientconnect": "The clientconnect event has been removed, use client_connected instead",
    "clientdisconnect": "The clientdisconnect event has been removed, "
                        "use client_disconnected instead",
    "serverconnect": "The serverconnect event has been removed, "
                     "use server_connect and server_connected instead",
    "serverdisconnect": "The serverdisconnect event has been removed, "
                        "use server_disconnected instead",
    "add_log": "The add_log event has been deprecated, use Python's builtin logging module instead",
}


class AddonManager:
    """The addons of a master, in order; `trigger`/`trigger_event` run a hook across them."""

    def __init__(self, master):
        self.lookup = {}
        self.chain = []
        self.master = master
        master.options.changed.connect(self._configure_all)

    def _configure_all(self, updated):
        self.trigger(hooks.ConfigureHook(updated))

    def clear(self):
        """Removes every addon (each gets `done`)."""
        for addon in self.chain:
            self.invoke_addon_sync(addon, hooks.DoneHook())
        self.lookup = {}
        self.chain = []

    def get(self, name):
        """The addon called `name` (its `name` attribute, else its lower-case class name)."""
        return self.lookup.get(name, None)

    def register(self, addon):
        """Runs `load` of `addon` and registers it and its sub-addons (not in the chain)."""
        for a in traverse([addon]):
            for old, message in _REMOVED_EVENTS.items():
                if hasattr(a, old):
                    logger.warning(f"{message}. For more details, see "
                                   "https://docs.mitmproxy.org/dev/addons-api-changelog/.")
            if _get_name(a) in self.lookup:
                raise exceptions.AddonManagerError(
                    f"An addon called '{_get_name(a)}' already exists.")
        self.invoke_addon_sync(addon, LoadHook(Loader(self.master)))
        for a in traverse([addon]):
            self.lookup[_get_name(a)] = a
        for a in traverse([addon]):
            self.master.commands.collect_commands(a)
        self.master.options.process_deferred()
        return addon

    def add(self, *addons):
        """Appends addons to the chain, running their `load`."""
        for addon in addons:
            self.chain.append(self.register(addon))

    def remove(self, addon):
        """Removes an addon and its sub-addons, running its `done`."""
        for a in traverse([addon]):
            name = _get_name(a)
            if name not in self.lookup:
                raise exceptions.AddonManagerError(f"No such addon: {name}")
            self.chain = [i for i in self.chain if i is not a]
            del self.lookup[name]
        self.invoke_addon_sync(addon, hooks.DoneHook())

    def __len__(self):
        return len(self.chain)

    def __str__(self):
        return pprint.pformat([str(i) for i in self.chain])

    def __contains__(self, item):
        return _get_name(item) in self.lookup

    async def handle_lifecycle(self, event):
        """Runs a flow event across the chain, then `update` for its flow."""
        message = event.args()[0]
        await self.trigger_event(event)
        if isinstance(message, flow.Flow):
            await self.trigger_event(hooks.UpdateHook([message]))

    def _iter_hooks(self, addon, event):
        if not isinstance(event, hooks.Hook):
            raise AssertionError(f"not a hook event: {event!r}")
        for a in traverse([addon]):
            func = getattr(a, event.name, None)
            if func is None or isinstance(func, types.ModuleType):
                continue
            if not callable(func):
                raise exceptions.AddonManagerError(
                    f"Addon handler {event.name} ({a}) not callable")
            yield a, func

    async def invoke_addon(self, addon, event):
        """Runs `event` on `addon` and its sub-addons, awaiting async hooks."""
        for _, func in self._iter_hooks(addon, event):
            if getattr(func, "__flowtap_concurrent__", False):
                # @concurrent: the hook runs in a thread, the event loop goes on.
                args = event.args()
                if inspect.iscoroutinefunction(func):
                    def run(func=func, args=args):
                        return asyncio.run(func(*args))
                else:
                    def run(func=func, args=args):
                        return func(*args)
                await asyncio.get_running_loop().run_in_executor(None, run)
                continue
            result = func(*event.args())
            if result is not None and inspect.isawaitable(result):
                await result

    def invoke_addon_sync(self, addon, event):
        """Runs `event` on `addon` and its sub-addons; AddonManagerError for an async hook."""
        for a, func in self._iter_hooks(addon, event):
            if inspect.iscoroutinefunction(func):
                raise exceptions.AddonManagerError(
                    f"Async handler {event.name} ({a}) cannot be called from sync context")
            func(*event.args())

    async def trigger_event(self, event):
        """Runs `event` across the chain; errors are logged; AddonHalt stops it."""
        for addon in self.chain:
            try:
                with safecall():
                    await self.invoke_addon(addon, event)
            except exceptions.AddonHalt:
                return

    def trigger(self, event):
        """`trigger_event` for sync hooks only."""
        for addon in self.chain:
            try:
                with safecall():
                    self.invoke_addon_sync(addon, event)
            except exceptions.AddonHalt:
                return
