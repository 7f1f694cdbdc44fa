"""`libmproxy.script`: `@concurrent` (hooks already run concurrently across flows here)."""

from mitmproxy.script import concurrent  # noqa: F401
