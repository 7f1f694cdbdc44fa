"""The argument of the server connection hooks."""

from dataclasses import dataclass

from ..connection import Client, Server


@dataclass
class ServerConnectionHookData:
    """`server_connect`, `server_connected`, `server_disconnected`, `server_connect_error`."""

    server: Server
    client: Client


globals().update(__import__("mitmproxy.hooks", fromlist=["hooks_of"]).hooks_of(__name__))
