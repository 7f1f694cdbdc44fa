"""`mitmproxy.proxy.layer`: `NextLayerHook`."""

from mitmproxy.hooks import hooks_of

globals().update(hooks_of(__name__))
