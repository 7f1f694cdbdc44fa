"""`mitmproxy.command`: the `@command` decorator for addon commands."""


def command(name=None):
    """Marks a method as the command `name` (default: the function name)."""

    def decorator(fn):
        fn.command_name = name or fn.__name__.replace("_", ".")
        return fn

    return decorator


def argument(name, type):
    def decorator(fn):
        return fn

    return decorator
