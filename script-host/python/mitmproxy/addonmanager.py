"""`mitmproxy.addonmanager`: the `Loader` given to `load(loader)`."""


class Loader:
    """Registers options and commands for the addon being loaded."""

    def __init__(self, options, commands=None):
        self._options = options
        self._commands = commands if commands is not None else {}

    def add_option(self, name, typespec, default, help, choices=None):
        self._options.add_option(name, typespec, default, help, choices)

    def add_command(self, path, func):
        self._commands[path] = func
