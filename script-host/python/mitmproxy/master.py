"""`mitmproxy.master`: options, addons and commands together, for plain-Python use.

In flowtap's worker `ctx.master` is the script host's (`flowtap_host.master`); this `Master`
is what `mitmproxy.test.taddons` builds so addons can be tested without a proxy.
"""

import asyncio
import logging

from mitmproxy import addonmanager, command, ctx, eventsequence, hooks, http, options
from mitmproxy.proxy.mode_specs import ReverseMode

logger = logging.getLogger(__name__)


class Master:
    """Holds the options, the addon chain and the commands; sets `mitmproxy.ctx`."""

    def __init__(self, opts, event_loop=None, with_termlog=False):
        self.options = opts or options.Options()
        self.commands = command.CommandManager(self)
        self.addons = addonmanager.AddonManager(self)
        self.event_loop = event_loop or asyncio.get_running_loop()
        self.should_exit = asyncio.Event()
        ctx.master = self
        ctx.options = self.options

    async def run(self):
        """Runs `running`, waits for `shutdown()`, then runs `done`."""
        self.should_exit.clear()
        await self.running()
        await self.should_exit.wait()
        await self.done()

    def shutdown(self):
        """Asks `run` to end (thread-safe)."""
        self.event_loop.call_soon_threadsafe(self.should_exit.set)

    async def running(self):
        await self.addons.trigger_event(hooks.RunningHook())

    async def done(self):
        await self.addons.trigger_event(hooks.DoneHook())

    async def load_flow(self, f):
        """Replays a recorded flow's events through the addons. With one reverse mode, the
        request is pointed at that mode's server (so saved flows replay against it)."""
        modes = self.options.mode if "mode" in self.options else []
        if isinstance(f, http.HTTPFlow) and len(modes) == 1 and modes[0].startswith("reverse:"):
            mode = ReverseMode.parse(modes[0])
            f.request.host, f.request.port = mode.address
            f.request.scheme = mode.scheme
        for event in eventsequence.iterate(f):
            await self.addons.handle_lifecycle(event)
