"""`netlib.tcp.Address`: a (host, port) pair with names, as 0.13-0.18 connections gave it."""


class Address(tuple):
    """`address.host`, `address.port`, and still a `(host, port)` tuple."""

    def __new__(cls, address, use_ipv6=False):
        return super().__new__(cls, tuple(address)[:2])

    @classmethod
    def wrap(cls, address):
        """An `Address` as it is, anything else made one (0.11-0.15's `Address.wrap`)."""
        return address if isinstance(address, cls) else cls(address)

    @property
    def host(self):
        return self[0]

    @property
    def port(self):
        return self[1]

    @property
    def address(self):
        return tuple(self)
