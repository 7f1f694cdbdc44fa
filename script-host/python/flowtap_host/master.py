"""`ctx.master`: commands, addons and shutdown, turned into control messages to the proxy."""

import logging

from mitmproxy import exceptions
from mitmproxy.flow import Flow


def _flows(arg):
    if isinstance(arg, Flow):
        return [arg]
    return list(arg)


class Commands:
    """`ctx.master.commands`: the proxy's commands scripts use, plus scripts' own `@command`s."""

    def __init__(self, host):
        self._host = host

    def call(self, name, *args):
        host = self._host
        if name == "replay.client":
            for flow in _flows(args[0]):
                host.send_control(flow, "replay", flow.get_state())
            return None
        if name == "inject.websocket":
            flow, to_client, message = args[:3]
            is_text = args[3] if len(args) > 3 else True
            if isinstance(message, str):
                message = message.encode()
            host.send_control(flow, "inject_websocket", flow.id, bool(to_client), message, bool(is_text))
            return None
        if name == "inject.tcp":
            flow, to_client, message = args[:3]
            if isinstance(message, str):
                message = message.encode()
            host.send_control(flow, "inject_tcp", flow.id, bool(to_client), message)
            return None
        if name == "inject.udp":
            flow, to_client, message = args[:3]
            from mitmproxy import udp
            if not isinstance(flow, udp.UDPFlow):
                logging.getLogger(__name__).warning("Cannot inject UDP messages into non-UDP flows.")
                return None
            if isinstance(message, str):
                message = message.encode()
            host.send_control(flow, "inject_udp", flow.id, bool(to_client), message)
            return None
        if name == "flow.kill":
            for flow in _flows(args[0]):
                if flow.killable:
                    flow.kill()
            return None
        if name == "flow.resume":
            for flow in _flows(args[0]):
                flow.resume()
            return None
        if name == "flow.mark":
            marker = args[1] if len(args) > 1 else ":default:"
            for flow in _flows(args[0]):
                flow.marked = marker if isinstance(marker, str) else (":default:" if marker else "")
            return None
        if name == "set":
            host.options.set(f"{args[0]}={args[1] if len(args) > 1 else ''}")
            return None
        for script in host.scripts:
            if name in script.commands:
                return script.commands[name](*args)
        raise exceptions.CommandError(f"Unknown command: {name}")

    def execute(self, text):
        parts = text.split()
        return self.call(parts[0], *parts[1:])


class Addons:
    """`ctx.master.addons`: look up loaded addons by name."""

    def __init__(self, host):
        self._host = host
        self._builtin = None

    def _builtins(self):
        """mitmdump's built-in addons scripts look up (`proxyserver`, ...), made on first use."""
        if self._builtin is None:
            from mitmproxy.addons import default_addons

            self._builtin = {a.name: a for a in default_addons()}
        return self._builtin

    def _all(self):
        for script in self._host.scripts:
            for addon in script.chain:
                yield addon

    def get(self, name):
        for addon in self._all():
            label = getattr(addon, "name", None) or type(addon).__name__.lower()
            if label == name:
                return addon
        return self._builtins().get(name)

    def __contains__(self, name):
        return self.get(name) is not None


class Master:
    """`ctx.master`."""

    def __init__(self, host):
        self._host = host
        self.commands = Commands(host)
        self.addons = Addons(host)

    @property
    def options(self):
        return self._host.options

    @property
    def event_loop(self):
        return self._host.loop

    def shutdown(self):
        """Asks the proxy to shut down gracefully (thread-safe)."""
        self._host.send_control(None, "shutdown")
