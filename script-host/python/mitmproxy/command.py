"""`mitmproxy.command`: addon commands with typed arguments, and the manager that runs them.

`@command.command("myaddon.greet")` on an addon method makes it a command; its parameter
annotations (`str`, `int`, `Sequence[flow.Flow]`, `types.Path`, ...) say how the strings of
a command line become arguments (`mitmproxy.types`). `CommandManager.execute("a.b x 'y z'")`
parses a line and calls the command; `call(name, *args)` calls it with Python values.
"""

import functools
import inspect
import logging
import re
import sys
import textwrap
import typing

import mitmproxy.types
from mitmproxy import exceptions

logger = logging.getLogger(__name__)


def verify_arg_signature(f, args, kwargs):
    """CommandError if `f` cannot be called with these arguments."""
    try:
        inspect.signature(f, eval_str=True).bind(*args, **kwargs)
    except TypeError as e:
        raise exceptions.CommandError(f"command argument mismatch: {e.args[0]}") from None


def typename(t):
    """The short name commands show for type `t` ("str", "flow[]", ...)."""
    if t is inspect.Parameter.empty:
        raise exceptions.CommandError("missing type annotation")
    converter = mitmproxy.types.CommandTypes.get(t, None)
    if not converter:
        raise exceptions.CommandError(f"unsupported type: {getattr(t, '__name__', t)}")
    return converter.display


class CommandParameter(typing.NamedTuple):
    name: str
    type: type
    kind: inspect._ParameterKind = inspect.Parameter.POSITIONAL_OR_KEYWORD

    def __str__(self):
        return f"*{self.name}" if self.kind is inspect.Parameter.VAR_POSITIONAL else self.name


class Command:
    """One command: its function, signature and help; CommandError for unknown types."""

    def __init__(self, manager, name, func):
        self.name, self.manager, self.func = name, manager, func
        self.signature = inspect.signature(func, eval_str=True)
        doc = func.__doc__
        self.help = "\n".join(textwrap.wrap(doc.strip())) if doc else None
        for pname, parameter in self.signature.parameters.items():
            if not mitmproxy.types.CommandTypes.get(parameter.annotation, None):
                raise exceptions.CommandError(
                    f"Argument {pname} has an unknown type {parameter.annotation} in {func}.")
        if self.return_type and not mitmproxy.types.CommandTypes.get(self.return_type, None):
            raise exceptions.CommandError(
                f"Return type has an unknown type ({self.return_type}) in {func}.")

    @property
    def return_type(self):
        ret = self.signature.return_annotation
        return None if ret is inspect.Signature.empty else ret

    @property
    def parameters(self):
        return [CommandParameter(n, p.annotation, p.kind)
                for n, p in self.signature.parameters.items()]

    def signature_help(self):
        params = " ".join(str(p) for p in self.parameters)
        ret = f" -> {typename(self.return_type)}" if self.return_type else ""
        return f"{self.name} {params}{ret}"

    def prepare_args(self, args):
        """The arguments bound and converted from strings; CommandError if they do not fit."""
        try:
            bound = self.signature.bind(*args)
        except TypeError:
            raise exceptions.CommandError(
                f"Command argument mismatch: \n    Expected: {self.signature.parameters}"
                f"\n    Received: {args}") from None
        for pname, value in bound.arguments.items():
            param = self.signature.parameters[pname]
            if param.kind == param.VAR_POSITIONAL:
                bound.arguments[pname] = tuple(
                    parsearg(self.manager, v, param.annotation) for v in value)
            else:
                bound.arguments[pname] = parsearg(self.manager, value, param.annotation)
        bound.apply_defaults()
        return bound

    def call(self, args):
        """Calls the command with string arguments; CommandError if it returns the wrong type."""
        bound = self.prepare_args(args)
        ret = self.func(*bound.args, **bound.kwargs)
        if ret is None and self.return_type is None:
            return None
        converter = mitmproxy.types.CommandTypes.get(self.return_type)
        if not converter.is_valid(self.manager, converter, ret):
            raise exceptions.CommandError(
                f"{self.name} returned unexpected data - expected {converter.display}")
        return ret


class ParseResult(typing.NamedTuple):
    value: str
    type: type
    valid: bool


# A quoted string (possibly unterminated), a run of whitespace, or a bare word.
_LEXEME = re.compile(r"""\s+|"(?:\\.|[^"\\])*"?|'(?:\\.|[^'\\])*'?|[^\s"']+""")


def unquote(x):
    """A lexeme without its quotes and escapes."""
    if len(x) > 1 and x[0] in "'\"" and x[-1] == x[0]:
        return re.sub(r"\\(.)", r"\1", x[1:-1])
    if x[:1] in ("'", '"'):
        return x[1:]
    return x


class CommandManager:
    """The commands of a master's addons, by name."""

    def __init__(self, master):
        self.master = master
        self.commands = {}

    def collect_commands(self, addon):
        """Adds every `@command` method of `addon`; a bad one is logged and skipped."""
        for attr in dir(addon):
            if attr.startswith("__"):
                continue
            try:
                obj = getattr(addon, attr)
                name = getattr(obj, "command_name", None)
            except Exception:
                continue  # a property or __getattr__ may raise
            if isinstance(name, str):
                try:
                    self.add(name, obj)
                except exceptions.CommandError as e:
                    logger.warning(f"Could not load command {name}: {e}")

    def add(self, path, func):
        self.commands[path] = Command(self, path, func)

    def parse_partial(self, cmdstr):
        """The lexemes of a (possibly partial) command line typed, and the parameters left."""
        parts = _LEXEME.findall(cmdstr)
        parsed, params = [], []
        for part in parts:
            if part.isspace():
                parsed.append(ParseResult(part, mitmproxy.types.Space, True))
                continue
            if not any(p.type is not mitmproxy.types.Space for p in parsed):
                typ = mitmproxy.types.Cmd
                command = self.commands.get(part)
                params = list(command.parameters) if command else []
            elif params:
                param = params[0] if params[0].kind == inspect.Parameter.VAR_POSITIONAL \
                    else params.pop(0)
                typ = param.type
            else:
                typ = mitmproxy.types.Unknown
            converter = mitmproxy.types.CommandTypes.get(typ, None)
            try:
                valid = bool(converter)
                if converter:
                    converter.parse(self, typ, unquote(part))
            except (ValueError, exceptions.CommandError):
                valid = False
            parsed.append(ParseResult(part, typ, valid))
        return parsed, params

    def call(self, command_name, *args):
        """Calls a command with Python values; CommandError if there is no such command."""
        if command_name not in self.commands:
            raise exceptions.CommandError(f"Unknown command: {command_name}")
        return self.commands[command_name].func(*args)

    def call_strings(self, command_name, args):
        """Calls a command with string arguments, converted by its annotations."""
        if command_name not in self.commands:
            raise exceptions.CommandError(f"Unknown command: {command_name}")
        return self.commands[command_name].call(args)

    def execute(self, cmdstr):
        """Runs a command line such as `flow.mark @all true`."""
        parts = [unquote(p) for p in _LEXEME.findall(cmdstr) if not p.isspace()]
        if not parts:
            raise exceptions.CommandError(f"Invalid command: {cmdstr!r}")
        return self.call_strings(parts[0], parts[1:])

    def dump(self, out=sys.stdout):
        for cmd in sorted(self.commands.values(), key=lambda c: c.signature_help()):
            for line in (cmd.help or "").splitlines():
                print("# " + line, file=out)
            print(cmd.signature_help(), file=out)
            print(file=out)


def parsearg(manager, spec, argtype):
    """`spec` converted to `argtype`; CommandError if it cannot be."""
    converter = mitmproxy.types.CommandTypes.get(argtype, None)
    if not converter:
        raise exceptions.CommandError(f"Unsupported argument type: {argtype}")
    try:
        return converter.parse(manager, argtype, spec)
    except ValueError as e:
        raise exceptions.CommandError(str(e)) from e


def command(name=None):
    """Makes an addon method the command `name` (default: its name with "_" as ".")."""

    def decorator(function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            verify_arg_signature(function, args, kwargs)
            return function(*args, **kwargs)

        wrapper.__dict__["command_name"] = name or function.__name__.replace("_", ".")
        return wrapper

    return decorator


def argument(name, type):
    """Sets the type of argument `name` (for types an annotation cannot name, like Choice)."""

    def decorator(f):
        if name not in f.__annotations__:
            raise exceptions.CommandError(f"no argument {name} in {f}")
        f.__annotations__[name] = type
        return f

    return decorator
