"""Answers requests to blocked hosts with 403 and counts them."""

import typing

from mitmproxy import command, ctx, exceptions, http


class Blocklist:
    def __init__(self):
        self.blocked = 0

    def load(self, loader):
        loader.add_option("blocklist", typing.Sequence[str], [], "Hosts to refuse.")
        loader.add_option("blocklist_status", int, 403, "Status code of the refusal.")

    def configure(self, updated):
        if "blocklist_status" in updated and not 400 <= ctx.options.blocklist_status < 600:
            raise exceptions.OptionsError("blocklist_status must be a 4xx or 5xx code")

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.request.pretty_host in ctx.options.blocklist:
            flow.response = http.Response.make(
                ctx.options.blocklist_status, b"blocked", {"content-type": "text/plain"})
            self.blocked += 1

    @command.command("blocklist.count")
    def count(self) -> int:
        return self.blocked


addons = [Blocklist()]
