"""`mitmproxy.proxy.context`: the connection context a layer works in."""

from mitmproxy import connection


class Context:
    """A client connection, the server it is relayed to, the options, and the layer stack."""

    def __init__(self, client, options):
        self.client = client
        self.options = options
        self.server = connection.Server(address=None, transport_protocol=client.transport_protocol)
        self.layers = []

    def fork(self):
        forked = Context(self.client, self.options)
        forked.server = self.server
        forked.layers = list(self.layers)
        return forked
