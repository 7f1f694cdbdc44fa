"""`mitmproxy.addons`: the built-in addons scripts look up (`ctx.master.addons.get(name)`).

flowtap's proxy implements mitmdump's behaviour in Rust; these are the Python faces of the
built-in addons that scripts read from: `core` and `proxyserver` (its servers and their listen
addresses, derived from the options).
"""

from mitmproxy.addons import core, proxyserver


def default_addons():
    """The built-in addons, in mitmdump's order, as far as flowtap has them."""
    return [core.Core(), proxyserver.Proxyserver()]
