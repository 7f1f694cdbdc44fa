"""`mitmproxy.addons.core`: the `core` addon (mitmdump's options are in `mitmproxy.options`)."""


class Core:
    """Present so that `ctx.master.addons.get("core")` finds it."""

    name = "core"
