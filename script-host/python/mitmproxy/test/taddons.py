"""`mitmproxy.test.taddons`: run an addon's hooks in a test, without a proxy.

    with taddons.context(MyAddon()) as tctx:
        tctx.configure(addon, my_option=True)
        addon.request(tflow.tflow())

`context` builds a `Master` (options, addon chain, commands) and sets `mitmproxy.ctx` to it,
as mitmproxy's does.
"""

import asyncio
import importlib.util
import logging
import os
import sys

import mitmproxy.master
import mitmproxy.options
from mitmproxy import command, eventsequence, hooks
from mitmproxy.addons import core

logger = logging.getLogger(__name__)


class context:
    """A master for testing addons; `configure`, `cycle`, `script` and `command` help."""

    def __init__(self, *addons, options=None, loadcore=True):
        try:
            loop = asyncio.get_running_loop()
            self.owns_loop = False
        except RuntimeError:
            loop = asyncio.new_event_loop()
            self.owns_loop = True
        self.master = mitmproxy.master.Master(options or mitmproxy.options.Options(),
                                              event_loop=loop)
        self.options = self.master.options
        if loadcore:
            self.master.addons.add(core.Core())
        for addon in addons:
            self.master.addons.add(addon)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        if self.owns_loop and not self.master.event_loop.is_closed():
            self.master.event_loop.close()
        return False

    async def cycle(self, addon, f):
        """Runs the flow's events through `addon`, stopping if the flow is intercepted."""
        for event in eventsequence.iterate(f):
            await self.master.addons.invoke_addon(addon, event)
            if f.intercepted:
                return

    def configure(self, addon, **kwargs):
        """Sets options (rolled back if `configure` rejects them) and runs `configure`."""
        if addon not in self.master.addons:
            self.master.addons.register(addon)
        with self.options.rollback(kwargs.keys(), reraise=True):
            if kwargs:
                self.options.update(**kwargs)
            else:
                self.master.addons.invoke_addon_sync(addon, hooks.ConfigureHook(set()))

    def script(self, path):
        """Loads the script at `path` and returns its module (the script's addon); an error
        in the script is logged, as mitmproxy's script loader does, and gives None."""
        name = "__mitmproxy_script__." + os.path.splitext(os.path.basename(path))[0]
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            logger.error(f"Script error: {path}: {e}", exc_info=True)
            return None
        finally:
            sys.path.pop(0)
        return module

    def command(self, func, *args):
        """Calls `func` as a command with string arguments."""
        return command.Command(self.master.commands, "test.command", func).call(args)
