"""Python 2 scripts: a script that does not compile as Python 3 is translated when it loads.

The translation is 2to3's: `fissix` (the maintained successor of lib2to3, from PyPI) when it
is importable, else the interpreter's own `lib2to3` (still shipped with CPython 3.11). One log
line says that a script was translated and with what. Two Python 2 habits 2to3 leaves broken
are covered here: `cStringIO`/`StringIO` (they held bytes; 2to3 makes them `io.StringIO`,
which refuses bytes) become `LegacyStringIO`, and the builtins Python 3 dropped (`file`,
`unicode`, ...) are given to the translated module.
"""

import functools
import io
import logging
import re
import sys
import types
import warnings

from .legacy_http import LegacyBytes, to_bytes

# The worker's own log (stderr), see `logs.OPERATIONAL`.
log = logging.getLogger("flowtap.worker")

_COMPAT_MODULE = "_flowtap_cStringIO"
_STRINGIO_REWRITES = (
    (re.compile(r"\bcStringIO\b"), _COMPAT_MODULE),
    (re.compile(r"^(\s*)import StringIO\b", re.M), rf"\1import {_COMPAT_MODULE} as StringIO"),
    (re.compile(r"^(\s*)from StringIO import\b", re.M), rf"\1from {_COMPAT_MODULE} import"),
)


class LegacyStringIO(io.BytesIO):
    """Python 2's `StringIO.StringIO`: a byte buffer that also takes `str` (as UTF-8)."""

    def __init__(self, initial=b""):
        super().__init__(to_bytes(initial or b""))

    def write(self, data):
        return super().write(to_bytes(data))

    def getvalue(self):
        return LegacyBytes(super().getvalue())

    def read(self, *args):
        return LegacyBytes(super().read(*args))


def _compat_module():
    module = sys.modules.get(_COMPAT_MODULE)
    if module is None:
        module = types.ModuleType(_COMPAT_MODULE, "cStringIO/StringIO of Python 2")
        module.StringIO = LegacyStringIO
        module.InputType = module.OutputType = LegacyStringIO
        sys.modules[_COMPAT_MODULE] = module
    return module


_PY2_BUILTINS = {
    "file": open,
    "unicode": str,
    "basestring": str,
    "long": int,
    "xrange": range,
    "raw_input": input,
    "unichr": chr,
    "reduce": functools.reduce,
}


def _refactoring_tool():
    """2to3 with every fixer: fissix if installed, else the standard library's lib2to3."""
    try:
        from fissix import refactor
        name = "fissix"
    except ImportError:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from lib2to3 import refactor
        name = "lib2to3"
    package = f"{name}.fixes"
    return refactor.RefactoringTool(refactor.get_fixers_from_package(package)), name


def translate(source, path="<script>"):
    """Python 2 `source` as Python 3 text, and the name of the translator used."""
    for pattern, replacement in _STRINGIO_REWRITES:
        source = pattern.sub(replacement, source)
    root = logging.getLogger()
    root.addFilter(_quiet_translator)
    logging.getLogger("RefactoringTool").setLevel(logging.WARNING)
    try:
        tool, name = _refactoring_tool()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = tool.refactor_string(source if source.endswith("\n") else source + "\n",
                                        path)
    finally:
        root.removeFilter(_quiet_translator)
    return str(tree), name


def _quiet_translator(record):
    """Drops the translator's own chatter (its grammar loader logs on the root logger)."""
    return not any(part in record.pathname for part in ("lib2to3", "fissix"))


def compile_script(path):
    """None when the file compiles as Python 3 (import it as usual); otherwise the code of
    its translation. Raises the original SyntaxError when the translation fails too.
    `cStringIO` and `StringIO` become importable either way (Python 3 has neither name)."""
    compat = _compat_module()
    sys.modules.setdefault("cStringIO", compat)
    sys.modules.setdefault("StringIO", compat)
    with open(path, "rb") as f:
        raw = f.read()
    try:
        compile(raw, path, "exec", dont_inherit=True)
        return None
    except SyntaxError as error:
        original = error
    source = raw.decode("utf-8", "surrogateescape")
    try:
        translated, name = translate(source, path)
        code = compile(translated, path, "exec", dont_inherit=True)
    except Exception:
        raise original from None
    log.info(
        "%s is Python 2 source: translated to Python 3 with %s", path, name)
    return code


def prepare_module(module):
    """Gives a translated module the Python 2 builtins 2to3 does not rewrite."""
    _compat_module()
    for name, value in _PY2_BUILTINS.items():
        module.__dict__.setdefault(name, value)
