"""`mitmproxy.hooks`: the hook names flowtap can fire, by category."""

LIFECYCLE = ("load", "configure", "running", "done", "update", "add_log")
CONNECTION = ("client_connected", "client_disconnected", "server_connect", "server_connected",
              "server_disconnected", "server_connect_error")
HTTP = ("requestheaders", "request", "responseheaders", "response", "error", "http_connect",
        "http_connect_upstream", "http_connected", "http_connect_error")
WEBSOCKET = ("websocket_start", "websocket_message", "websocket_end")
TCP = ("tcp_start", "tcp_message", "tcp_end", "tcp_error")
UDP = ("udp_start", "udp_message", "udp_end", "udp_error")
DNS = ("dns_request", "dns_response", "dns_error")
TLS = ("tls_clienthello", "tls_start_client", "tls_start_server", "tls_established_client",
       "tls_established_server", "tls_failed_client", "tls_failed_server", "next_layer",
       "socks5_auth", "quic_start_client", "quic_start_server")

all_hooks = {name: name for group in (LIFECYCLE, CONNECTION, HTTP, WEBSOCKET, TCP, UDP, DNS, TLS)
             for name in group}


class Hook:
    """Base of hook descriptions (mitmproxy's dataclass hooks); kept for imports."""

    name = ""
