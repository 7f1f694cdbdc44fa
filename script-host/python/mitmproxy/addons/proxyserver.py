"""`mitmproxy.addons.proxyserver`: the proxy's servers, one per `--mode`, as scripts see them.

`ctx.master.addons.get("proxyserver").servers` lists a `ServerInstance` per mode with the
addresses it listens on (`listen_addrs`), from the `mode`, `listen_host` and `listen_port`
options (the proxy reports the bound port for port 0 through `set_listen_addrs`).
"""

from mitmproxy import ctx, optmanager
from mitmproxy.proxy.mode_specs import ProxyMode


class ServerInstance:
    """One mode's server: `mode` (a ProxyMode) and `listen_addrs` [(host, port)]."""

    def __init__(self, mode, listen_addrs):
        self.mode = mode
        self.listen_addrs = list(listen_addrs)
        self.is_running = bool(listen_addrs)

    def __repr__(self):
        return f"ServerInstance({self.mode.full_spec!r}, {self.listen_addrs})"


class Proxyserver:
    """The `proxyserver` addon: `servers` and `listen_addrs()`."""

    name = "proxyserver"

    def __init__(self):
        self._bound = {}
        self._options = None

    def load(self, loader):
        # mitmproxy's own tests pass the options themselves as the loader.
        self._options = loader if isinstance(loader, optmanager.Options) \
            else getattr(loader, "_options", None)

    def set_listen_addrs(self, spec, addrs):
        """Records where the server for mode `spec` is bound (called by the host)."""
        self._bound[spec] = [tuple(a) for a in addrs]

    @property
    def servers(self):
        options = self._options if self._options is not None else ctx.options
        instances = []
        for spec in getattr(options, "mode", None) or ["regular"]:
            mode = ProxyMode.parse(spec)
            addrs = self._bound.get(spec)
            if addrs is None:
                port = mode.listen_port(getattr(options, "listen_port", None))
                host = mode.listen_host(getattr(options, "listen_host", None))
                addrs = [(host, port)] if port is not None else []
            instances.append(ServerInstance(mode, addrs))
        return instances

    def listen_addrs(self):
        return [addr for server in self.servers for addr in server.listen_addrs]
