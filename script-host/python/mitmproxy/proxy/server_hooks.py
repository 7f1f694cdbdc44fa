"""The argument of the server connection hooks."""

from dataclasses import dataclass

from ..connection import Client, Server


@dataclass
class ServerConnectionHookData:
    """`server_connect`, `server_connected`, `server_disconnected`, `server_connect_error`."""

    server: Server
    client: Client
