"""Refuse requests to blocked hosts with a 403 (set the list with --set blocked_hosts=...)."""

from typing import Sequence

from mitmproxy import ctx, http


def load(loader):
    loader.add_option(
        "blocked_hosts", Sequence[str], ["blocked.example"], "Hosts that get a 403."
    )


def request(flow):
    if flow.request.pretty_host in ctx.options.blocked_hosts:
        flow.response = http.Response.make(
            403, f"{flow.request.pretty_host} is blocked\n", {"Content-Type": "text/plain"}
        )
