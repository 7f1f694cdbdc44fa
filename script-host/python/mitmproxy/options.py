"""`mitmproxy.options`: mitmdump's options, with mitmdump 12.3.1's names, types and defaults.

`Options()` has every option mitmdump has once its built-in addons are loaded (listen_port,
view_filter, flow_detail, ...), so an addon that reads `ctx.options.<name>` finds it. In
flowtap's worker the script host adds flowtap's own meaning to the ones the proxy implements.
"""

from collections.abc import Sequence
from typing import Optional

from mitmproxy import optmanager

CONF_DIR = "~/.mitmproxy"
CONF_BASENAME = "mitmproxy"
CONTENT_VIEW_LINES_CUTOFF = 512
KEY_SIZE = 2048

# (name, type, default, choices)
MITMDUMP_OPTIONS = [
    ('add_upstream_certs_to_client_chain', bool, False, None),
    ('allow_hosts', Sequence[str], [], None),
    ('anticache', bool, False, None),
    ('anticomp', bool, False, None),
    ('block_global', bool, True, None),
    ('block_list', Sequence[str], [], None),
    ('block_private', bool, False, None),
    ('body_size_limit', Optional[str], None, None),
    ('cert_passphrase', Optional[str], None, None),
    ('certs', Sequence[str], [], None),
    ('ciphers_client', Optional[str], None, None),
    ('ciphers_server', Optional[str], None, None),
    ('client_certs', Optional[str], None, None),
    ('client_replay', Sequence[str], [], None),
    ('client_replay_concurrency', int, 1, None),
    ('command_history', bool, True, None),
    ('confdir', str, '~/.mitmproxy', None),
    ('connect_addr', Optional[str], None, None),
    ('connection_strategy', str, 'eager', ('eager', 'lazy')),
    ('content_view_lines_cutoff', int, 512, None),
    ('dns_name_servers', Sequence[str], [], None),
    ('dns_use_hosts_file', bool, True, None),
    ('dumper_default_contentview', str, 'auto', ['auto', 'dns', 'graphql', 'grpc', 'hex dump', 'hex stream', 'http/3 frames', 'image', 'javascript', 'json', 'mqtt', 'msgpack', 'multipart form', 'protobuf', 'query', 'raw', 'socket.io', 'url-encoded', 'viewcss', 'wbxml', 'xml/html', 'zip archive']),
    ('dumper_filter', Optional[str], None, None),
    ('emudhra', bool, False, None),
    ('emudhra_old', bool, False, None),
    ('export_preserve_original_ip', bool, False, None),
    ('flow_detail', int, 1, None),
    ('hardump', str, '', None),
    ('http2', bool, True, None),
    ('http2_ping_keepalive', int, 58, None),
    ('http3', bool, True, None),
    ('http_connect_send_host_header', bool, True, None),
    ('ignore_hosts', Sequence[str], [], None),
    ('keep_alt_svc_header', bool, False, None),
    ('keep_host_header', bool, False, None),
    ('keepserving', bool, False, None),
    ('key_size', int, 2048, None),
    ('listen_host', str, '', None),
    ('listen_port', Optional[int], None, None),
    ('map_local', Sequence[str], [], None),
    ('map_remote', Sequence[str], [], None),
    ('mode', Sequence[str], ['regular'], None),
    ('modify_body', Sequence[str], [], None),
    ('modify_headers', Sequence[str], [], None),
    ('normalize_outbound_headers', bool, True, None),
    ('onboarding', bool, True, None),
    ('onboarding_host', str, 'mitm.it', None),
    ('protobuf_definitions', Optional[str], None, None),
    ('proxy_debug', bool, False, None),
    ('proxyauth', Optional[str], None, None),
    ('rawtcp', bool, True, None),
    ('readfile_filter', Optional[str], None, None),
    ('request_client_cert', bool, False, None),
    ('rfile', Optional[str], None, None),
    ('save_stream_file', Optional[str], None, None),
    ('save_stream_filter', Optional[str], None, None),
    ('scripts', Sequence[str], [], None),
    ('server', bool, True, None),
    ('server_replay', Sequence[str], [], None),
    ('server_replay_extra', str, 'forward', ['forward', 'kill', '204', '400', '404', '500']),
    ('server_replay_ignore_content', bool, False, None),
    ('server_replay_ignore_host', bool, False, None),
    ('server_replay_ignore_params', Sequence[str], [], None),
    ('server_replay_ignore_payload_params', Sequence[str], [], None),
    ('server_replay_ignore_port', bool, False, None),
    ('server_replay_kill_extra', bool, False, None),
    ('server_replay_nopop', bool, False, None),
    ('server_replay_refresh', bool, True, None),
    ('server_replay_reuse', bool, False, None),
    ('server_replay_use_headers', Sequence[str], [], None),
    ('show_ignored_hosts', bool, False, None),
    ('showhost', bool, False, None),
    ('ssl_insecure', bool, False, None),
    ('ssl_verify_upstream_trusted_ca', Optional[str], None, None),
    ('ssl_verify_upstream_trusted_confdir', Optional[str], None, None),
    ('stickyauth', Optional[str], None, None),
    ('stickycookie', Optional[str], None, None),
    ('store_streamed_bodies', bool, False, None),
    ('stream_large_bodies', Optional[str], None, None),
    ('strip_ech', bool, True, None),
    ('tcp_hosts', Sequence[str], [], None),
    ('tcp_timeout', int, 600, None),
    ('termlog_verbosity', str, 'info', ['error', 'warn', 'info', 'alert', 'debug']),
    ('tls_ecdh_curve_client', Optional[str], None, None),
    ('tls_ecdh_curve_server', Optional[str], None, None),
    ('tls_version_client_max', str, 'UNBOUNDED', ['UNBOUNDED', 'SSL3', 'TLS1', 'TLS1_1', 'TLS1_2', 'TLS1_3']),
    ('tls_version_client_min', str, 'TLS1_2', ['UNBOUNDED', 'SSL3', 'TLS1', 'TLS1_1', 'TLS1_2', 'TLS1_3']),
    ('tls_version_server_max', str, 'UNBOUNDED', ['UNBOUNDED', 'SSL3', 'TLS1', 'TLS1_1', 'TLS1_2', 'TLS1_3']),
    ('tls_version_server_min', str, 'TLS1_2', ['UNBOUNDED', 'SSL3', 'TLS1', 'TLS1_1', 'TLS1_2', 'TLS1_3']),
    ('udp_hosts', Sequence[str], [], None),
    ('upstream_auth', Optional[str], None, None),
    ('upstream_cert', bool, True, None),
    ('validate_inbound_headers', bool, True, None),
    ('websocket', bool, True, None),
]


class Options(optmanager.OptManager):
    """mitmdump's options; keyword arguments set values."""

    def __init__(self, **kwargs):
        super().__init__()
        for name, typespec, default, choices in MITMDUMP_OPTIONS:
            self.add_option(name, typespec, default, "", choices)
        if kwargs:
            self.update(**kwargs)
