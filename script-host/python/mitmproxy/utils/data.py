"""`mitmproxy.utils.data`: paths to data files that live beside a module."""

import importlib
import inspect
import os.path


class Data:
    """Data files of the module `name`: `Data(__name__).path("data/x.bin")`."""

    def __init__(self, name):
        self.name = name
        source = inspect.getsourcefile(importlib.import_module(name))
        if source is None:
            raise ValueError(f"module {name} has no source file")
        self.dirname = os.path.abspath(os.path.dirname(source))

    def push(self, subpath):
        """A `Data` for the directory `subpath` relative to this one."""
        pushed = Data(self.name)
        pushed.dirname = os.path.normpath(os.path.join(self.dirname, subpath))
        return pushed

    def path(self, path):
        """The absolute path of `path` here; ValueError if nothing exists there."""
        full = os.path.normpath(os.path.join(self.dirname, path))
        if not os.path.exists(full):
            raise ValueError(f"dataPath: {full} does not exist.")
        return full


pkg_data = Data(__name__).push("..")
