"""`libmproxy.protocol.tcp` (0.11-0.13): `TCPHandler`, the raw relay a script handed an
upgraded connection to (see `flowtap_host.legacy.TcpRelay`)."""

from flowtap_host.legacy import TcpRelay as TCPHandler  # noqa: F401
