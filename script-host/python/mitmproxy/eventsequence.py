"""`mitmproxy.eventsequence`: the hooks a recorded flow goes through, in order.

`iterate(flow)` yields hook events as mitmproxy would fire them for the flow (used to replay
saved flows through addons, and by `taddons.context().cycle`). Message lists are refilled one
message per `*_message` event, so each event sees the flow as it was at that point.
"""

from mitmproxy import dns, flow, hooks, http, tcp, udp
from mitmproxy.proxy import layers


def _iterate_http(f):
    if f.request:
        yield layers.http.HttpRequestHeadersHook(f)
        yield layers.http.HttpRequestHook(f)
    if f.response:
        yield layers.http.HttpResponseHeadersHook(f)
        yield layers.http.HttpResponseHook(f)
    if f.websocket:
        queued, f.websocket.messages = f.websocket.messages, []
        yield layers.websocket.WebsocketStartHook(f)
        for message in queued:
            f.websocket.messages.append(message)
            yield layers.websocket.WebsocketMessageHook(f)
        yield layers.websocket.WebsocketEndHook(f)
    elif f.error:
        yield layers.http.HttpErrorHook(f)


def _iterate_messages(layer, prefix):
    def iterate(f):
        queued, f.messages = f.messages, []
        yield getattr(layer, f"{prefix}StartHook")(f)
        for message in queued:
            f.messages.append(message)
            yield getattr(layer, f"{prefix}MessageHook")(f)
        yield getattr(layer, f"{prefix}ErrorHook" if f.error else f"{prefix}EndHook")(f)

    return iterate


def _iterate_dns(f):
    if f.request:
        yield layers.dns.DnsRequestHook(f)
    if f.response:
        yield layers.dns.DnsResponseHook(f)
    if f.error:
        yield layers.dns.DnsErrorHook(f)


_ITERATORS = [
    (http.HTTPFlow, _iterate_http),
    (udp.UDPFlow, _iterate_messages(layers.udp, "Udp")),
    (tcp.TCPFlow, _iterate_messages(layers.tcp, "Tcp")),
    (dns.DNSFlow, _iterate_dns),
]


def iterate(f):
    """The hook events of flow `f`, in order; TypeError for a flow of unknown type."""
    for cls, iterator in _ITERATORS:
        if isinstance(f, cls):
            return iterator(f)
    raise TypeError(f"Unknown flow type: {f.__class__.__name__}")


__all__ = ["iterate", "hooks", "flow"]
