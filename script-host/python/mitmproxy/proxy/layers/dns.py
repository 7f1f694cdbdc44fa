"""`mitmproxy.proxy.layers.dns`: the hooks of this layer (flowtap's proxy is in Rust)."""

from mitmproxy.hooks import hooks_of

globals().update(hooks_of(__name__))
