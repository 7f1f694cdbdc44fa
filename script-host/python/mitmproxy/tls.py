"""`mitmproxy.tls`: a parsed TLS ClientHello, and the data of the TLS hooks.

`ClientHello(raw)` reads the handshake message body (RFC 8446 section 4.1.2): cipher suites,
SNI, ALPN offers and the raw extensions. `ClientHelloData` is what `tls_clienthello` gets,
`TlsData` what the `tls_*` hooks get.
"""

import dataclasses
import struct
import typing


class _Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError("truncated ClientHello")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def uint(self, size):
        return int.from_bytes(self.take(size), "big")

    def vector(self, length_size):
        return self.take(self.uint(length_size))


class ClientHello:
    """A TLS ClientHello; ValueError if the bytes are not one."""

    def __init__(self, raw_client_hello, dtls=False):
        self._dtls = dtls
        self._raw_bytes = bytes(raw_client_hello)
        r = _Reader(self._raw_bytes)
        self.version = r.uint(2)
        self.random = r.take(32)
        self.session_id = r.vector(1)
        if dtls:  # RFC 6347 4.2.1: a cookie follows the session id
            self.cookie = r.vector(1)
        suites = r.vector(2)
        self._cipher_suites = [v for (v,) in struct.iter_unpack(">H", suites[:len(suites) // 2 * 2])]
        self.compression_methods = r.vector(1)
        self._extensions = []
        if r.pos < len(self._raw_bytes):
            ext = _Reader(r.vector(2))
            while ext.pos < len(ext.data):
                kind = ext.uint(2)
                self._extensions.append((kind, ext.vector(2)))

    def raw_bytes(self, wrap_in_record=True):
        """The ClientHello body; with `wrap_in_record`, inside a synthetic TLS 1.2 record and
        handshake header."""
        if self._dtls:
            raise NotImplementedError("DTLS ClientHellos cannot be wrapped in a TLS record")
        if not wrap_in_record:
            return self._raw_bytes
        body = self._raw_bytes
        return (b"\x16\x03\x03" + (len(body) + 4).to_bytes(2, "big") + b"\x01"
                + len(body).to_bytes(3, "big") + body)

    @property
    def cipher_suites(self):
        return list(self._cipher_suites)

    @property
    def sni(self):
        """The server name (SNI host_name), or None."""
        for kind, data in self._extensions:
            if kind == 0:
                r = _Reader(_Reader(data).vector(2))
                while r.pos < len(r.data):
                    name_type, name = r.uint(1), r.vector(2)
                    if name_type == 0:
                        return name.decode("idna")
        return None

    @property
    def alpn_protocols(self):
        """The ALPN protocols offered (bytes), or []."""
        for kind, data in self._extensions:
            if kind == 16:
                r = _Reader(_Reader(data).vector(2))
                protocols = []
                while r.pos < len(r.data):
                    protocols.append(r.vector(1))
                return protocols
        return []

    @property
    def extensions(self):
        """`[(type, data)]` in the order sent."""
        return list(self._extensions)

    def __repr__(self):
        return f"ClientHello(sni: {self.sni}, alpn_protocols: {self.alpn_protocols})"


@dataclasses.dataclass
class ClientHelloData:
    """`tls_clienthello(data)`: set `ignore_connection` to pass the connection through
    untouched, `establish_server_tls_first` to talk to the server before the client."""

    context: typing.Any
    client_hello: ClientHello
    ignore_connection: bool = False
    establish_server_tls_first: bool = False


@dataclasses.dataclass
class TlsData:
    """The `tls_start_*`, `tls_established_*` and `tls_failed_*` hooks' argument."""

    conn: typing.Any
    context: typing.Any
    ssl_conn: typing.Any = None
    is_dtls: bool = False
