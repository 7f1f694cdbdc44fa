"""`mitmproxy.types`: the argument types of commands, and how a string becomes each.

Command functions annotate their parameters (`flows: Sequence[flow.Flow]`, `path: types.Path`);
`CommandTypes.get(annotation)` gives the converter that parses command-line text into that
type, checks a value, and offers completions.
"""

import codecs
import glob
import os
import re
import typing
from collections.abc import Sequence

from mitmproxy import exceptions, flow


class Path(str):
    """A file system path (completed from the file system)."""


class Cmd(str):
    """The name of a command."""


class CmdArgs(str):
    """The arguments of a command, as one string."""


class Unknown(str):
    """An argument of unknown type."""


class Space(str):
    """Whitespace between arguments."""


class CutSpec(Sequence[str]):
    """Comma-separated attribute paths (`request.host,response.status_code`)."""


class Data(Sequence[Sequence[typing.Union[str, bytes]]]):
    """Tabular data."""


class Marker(str):
    """A flow marker: an emoji name or a single character."""


class Choice:
    """One of the strings the command `options_command` returns."""

    def __init__(self, options_command):
        self.options_command = options_command

    def __instancecheck__(self, instance):
        return False


class _BaseType:
    typ = object
    display = ""

    def completion(self, manager, t, s):
        return []

    def parse(self, manager, typ, s):
        raise NotImplementedError

    def is_valid(self, manager, typ, val):
        raise NotImplementedError


class _BoolType(_BaseType):
    typ = bool
    display = "bool"

    def completion(self, manager, t, s):
        return ["false", "true"]

    def parse(self, manager, t, s):
        if s == "true":
            return True
        if s == "false":
            return False
        raise ValueError(f"Booleans are 'true' or 'false', got {s!r}")

    def is_valid(self, manager, typ, val):
        return val in (True, False)


_ESCAPE = re.compile(r"\\(?:N\{[^}]*\}|.)", re.DOTALL)


class _StrType(_BaseType):
    typ = str
    display = "str"

    @staticmethod
    def _unescape(match):
        try:
            return codecs.decode(match.group(0), "unicode-escape")
        except UnicodeDecodeError as e:
            raise ValueError(str(e)) from None

    def parse(self, manager, t, s):
        return _ESCAPE.sub(self._unescape, s)

    def is_valid(self, manager, typ, val):
        return isinstance(val, str)


class _BytesType(_BaseType):
    typ = bytes
    display = "bytes"

    def parse(self, manager, t, s):
        try:
            return codecs.escape_decode(s)[0]
        except ValueError as e:
            raise ValueError(f"Invalid str: {e}") from None

    def is_valid(self, manager, typ, val):
        return isinstance(val, bytes)


class _UnknownType(_BaseType):
    typ = Unknown
    display = "unknown"

    def parse(self, manager, t, s):
        return s

    def is_valid(self, manager, typ, val):
        return False


class _IntType(_BaseType):
    typ = int
    display = "int"

    def parse(self, manager, t, s):
        try:
            return int(s)
        except ValueError as e:
            raise ValueError(str(e)) from None

    def is_valid(self, manager, typ, val):
        return isinstance(val, int) and not isinstance(val, bool)


class _PathType(_BaseType):
    typ = Path
    display = "path"

    def completion(self, manager, t, start):
        if not start:
            start = "./"
        path = os.path.expanduser(start)
        found = sorted(glob.glob(path + "*"))
        return [p + "/" if os.path.isdir(p) else p for p in found] or [start]

    def parse(self, manager, t, s):
        return os.path.expanduser(s)

    def is_valid(self, manager, typ, val):
        return isinstance(val, str)


class _CmdType(_BaseType):
    typ = Cmd
    display = "cmd"

    def completion(self, manager, t, s):
        return list(manager.commands.keys())

    def parse(self, manager, t, s):
        if s not in manager.commands:
            raise ValueError(f"Unknown command: {s}")
        return s

    def is_valid(self, manager, typ, val):
        return val in manager.commands


class _ArgType(_BaseType):
    typ = CmdArgs
    display = "arg"

    def parse(self, manager, t, s):
        return s

    def is_valid(self, manager, typ, val):
        return isinstance(val, str)


class _StrSeqType(_BaseType):
    typ = Sequence[str]
    display = "str[]"

    def parse(self, manager, t, s):
        return [x.strip() for x in s.split(",")]

    def is_valid(self, manager, typ, val):
        return isinstance(val, (list, tuple)) and all(isinstance(x, str) for x in val)


class _CutSpecType(_BaseType):
    typ = CutSpec
    display = "cut[]"
    valid_prefixes = [
        "request.method", "request.scheme", "request.host", "request.http_version",
        "request.port", "request.path", "request.url", "request.text", "request.content",
        "request.raw_content", "request.timestamp_start", "request.timestamp_end",
        "request.header[", "response.status_code", "response.reason", "response.text",
        "response.content", "response.timestamp_start", "response.timestamp_end",
        "response.raw_content", "response.header[", "client_conn.peername.port",
        "client_conn.peername.host", "client_conn.tls_version", "client_conn.sni",
        "client_conn.tls_established", "server_conn.address.port", "server_conn.address.host",
        "server_conn.ip_address.host", "server_conn.tls_version", "server_conn.sni",
        "server_conn.tls_established",
    ]

    def completion(self, manager, t, s):
        spec = s.split(",")
        return [",".join(spec[:-1] + [p]) for p in self.valid_prefixes]

    def parse(self, manager, t, s):
        return [x.strip() for x in s.split(",")]

    def is_valid(self, manager, typ, val):
        return isinstance(val, str) and all(
            any(part.startswith(p) for p in self.valid_prefixes) for part in val.split(","))


class _BaseFlowType(_BaseType):
    viewmarkers = ["@all", "@focus", "@shown", "@hidden", "@marked", "@unmarked"]
    valid_prefixes = viewmarkers + ["~q", "~s", "~a", "~hq", "~hs", "~b", "~bq", "~bs", "~t",
                                    "~d", "~m", "~u", "~c"]

    def completion(self, manager, t, s):
        return self.valid_prefixes


class _FlowType(_BaseFlowType):
    typ = flow.Flow
    display = "flow"

    def parse(self, manager, t, s):
        try:
            flows = manager.call_strings("view.flows.resolve", [s])
        except exceptions.CommandError as e:
            raise ValueError(str(e)) from e
        if len(flows) != 1:
            raise ValueError(f"Command requires one flow, specification matched {len(flows)}.")
        return flows[0]

    def is_valid(self, manager, typ, val):
        return isinstance(val, flow.Flow)


class _FlowsType(_BaseFlowType):
    typ = Sequence[flow.Flow]
    display = "flow[]"

    def parse(self, manager, t, s):
        try:
            return manager.call_strings("view.flows.resolve", [s])
        except exceptions.CommandError as e:
            raise ValueError(str(e)) from e

    def is_valid(self, manager, typ, val):
        return isinstance(val, (list, tuple)) and all(isinstance(x, flow.Flow) for x in val)


class _DataType(_BaseType):
    typ = Data
    display = "data[][]"

    def parse(self, manager, t, s):
        raise ValueError("data cannot be passed as argument")

    def is_valid(self, manager, typ, val):
        return isinstance(val, (list, tuple)) and all(
            isinstance(row, (list, tuple)) and all(isinstance(x, (str, bytes)) for x in row)
            for row in val)


class _ChoiceType(_BaseType):
    typ = Choice
    display = "choice"

    def completion(self, manager, t, s):
        return manager.execute(t.options_command)

    def parse(self, manager, t, s):
        options = manager.execute(t.options_command)
        if s not in options:
            raise ValueError(f"Invalid choice: {s}")
        return s

    def is_valid(self, manager, typ, val):
        try:
            return val in manager.execute(typ.options_command)
        except exceptions.CommandError:
            return False


class _MarkerType(_BaseType):
    typ = Marker
    display = "marker"

    def completion(self, manager, t, s):
        from mitmproxy.utils import emoji

        return ["true", "false"] + list(emoji.emoji)

    def parse(self, manager, t, s):
        from mitmproxy.utils import emoji

        if s == "true":
            return ":default:"
        if s == "false":
            return ""
        if s not in emoji.emoji and len(s) != 1:
            raise ValueError(f"Invalid choice: {s}")
        return s

    def is_valid(self, manager, typ, val):
        from mitmproxy.utils import emoji

        return val in emoji.emoji or len(val) == 1


def _key(t):
    """`typing.Sequence[X]` and `collections.abc.Sequence[X]` are one type here."""
    origin = typing.get_origin(t)
    if origin is not None:
        return origin, typing.get_args(t)
    return t


class TypeManager:
    """Converters by the type they produce."""

    def __init__(self, *types):
        self.typemap = {_key(t.typ): t() for t in types}

    def get(self, t, default=None):
        if type(t) in self.typemap:
            return self.typemap[type(t)]
        try:
            return self.typemap.get(_key(t), default)
        except TypeError:  # an unhashable annotation
            return default


CommandTypes = TypeManager(
    _ArgType, _BoolType, _ChoiceType, _CmdType, _CutSpecType, _DataType, _FlowType,
    _FlowsType, _IntType, _MarkerType, _PathType, _StrType, _StrSeqType, _BytesType,
)
