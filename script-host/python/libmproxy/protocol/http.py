"""`libmproxy.protocol.http` (0.11-0.13): `decoded`, `HTTPResponse`, `HTTPRequest`."""

from ..models import HTTPRequest, HTTPResponse, decoded  # noqa: F401
from flowtap_host.legacy import OldFlow as HTTPFlow  # noqa: F401
