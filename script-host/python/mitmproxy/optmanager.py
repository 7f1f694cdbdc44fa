"""`ctx.options`: typed options, deferred `--set` values, and change notification.

Typespecs: bool, str, int, float, Optional[str], Optional[int], Sequence[str]. The script host
installs `on_change(names)` (runs `configure`, may raise OptionsError to roll back) and
`on_core_change(values)` (forwards changes of the proxy's own options to the core).
"""

import contextlib
import copy
import inspect
import pathlib
import typing
import weakref

from . import exceptions

_TYPESPECS = {
    bool: "bool", str: "str", int: "int", float: "float",
    typing.Optional[str]: "optional str", typing.Optional[int]: "optional int",
    typing.Sequence[str]: "sequence of str",
}


def typespec_name(typespec):
    """The protocol's name of a typespec ("optional str", ...); TypeError for others."""
    if isinstance(typespec, str) and typespec in _TYPESPECS.values():
        return typespec
    for spec, name in _TYPESPECS.items():
        if typespec == spec:
            return name
    origin = typing.get_origin(typespec)
    if origin is not None and typing.get_args(typespec) == (str,) and "Sequence" in str(origin):
        return "sequence of str"
    raise exceptions.OptionsError(f"Unsupported option type: {typespec!r}")


def check(name, kind, value):
    ok = {
        "bool": lambda v: isinstance(v, bool),
        "str": lambda v: isinstance(v, str),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "optional str": lambda v: v is None or isinstance(v, str),
        "optional int": lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)),
        "sequence of str": lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v),
    }[kind](value)
    if not ok:
        raise exceptions.OptionsError(f"Expected {kind} for {name}, but got {value!r}.")
    return list(value) if kind == "sequence of str" else value


def parse(name, kind, text, current=None):
    """Parses a `--set name=text` value for an option of type `kind`."""
    try:
        if kind == "bool":
            low = (text or "true").lower()
            if low == "toggle":
                return not current
            if low in ("true", "1", "yes", "on"):
                return True
            if low in ("false", "0", "no", "off"):
                return False
            raise ValueError(text)
        if kind in ("str",):
            return text
        if kind == "optional str":
            return text if text else None
        if kind == "int":
            return int(text)
        if kind == "optional int":
            return int(text) if text else None
        if kind == "float":
            return float(text)
        if kind == "sequence of str":
            # Repeated `--set name=a --set name=b` arrive joined by newlines.
            return [x for x in text.split("\n")] if text else []
    except ValueError:
        pass
    raise exceptions.OptionsError(f"Invalid value for {name} ({kind}): {text!r}")


class _Option:
    __slots__ = ("name", "typespec", "default", "help", "choices", "value", "core")

    def __init__(self, name, typespec, default, help, choices, core=False):
        self.name, self.typespec, self.default = name, typespec, default
        self.help, self.choices, self.value, self.core = help, choices, default, core

    def current(self):
        return self.value

    def has_changed(self):
        return self.value != self.default

    def reset(self):
        self.value = copy.deepcopy(self.default)


class _Signal:
    """A list of receivers called with the signal's arguments (mitmproxy's `changed`)."""

    def __init__(self):
        self.receivers = []

    def connect(self, receiver):
        self.receivers.append(receiver)

    def disconnect(self, receiver):
        self.receivers = [r for r in self.receivers if r != receiver]

    def send(self, *args, **kwargs):
        for receiver in list(self.receivers):
            receiver(*args, **kwargs)


class Options:
    """Attribute access to option values; `update(**kw)` changes them and fires `configure`."""

    def __init__(self, **kwargs):
        object.__setattr__(self, "_options", {})
        object.__setattr__(self, "deferred", {})
        object.__setattr__(self, "on_change", None)
        object.__setattr__(self, "on_core_change", None)
        object.__setattr__(self, "changed", _Signal())
        object.__setattr__(self, "errored", _Signal())
        object.__setattr__(self, "_subscriptions", [])
        self.changed.connect(self._notify_subscribers)
        if kwargs:
            self.update(**kwargs)

    def add_option(self, name, typespec, default, help, choices=None, core=False):
        kind = typespec_name(typespec)
        default = check(name, kind, default)
        existing = self._options.get(name)
        if existing and (existing.typespec, existing.default) == (kind, default):
            # The proxy's own option of a name mitmdump has: now it is forwarded.
            existing.core = existing.core or core
            return
        opt = _Option(name, kind, default, help, list(choices) if choices else None, core)
        self._options[name] = opt
        if name in self.deferred:
            text = self.deferred.pop(name)
            opt.value = self._validated(opt, parse(name, kind, text, opt.value))

    def _validated(self, opt, value):
        value = check(opt.name, opt.typespec, value)
        if opt.choices and value is not None and value not in opt.choices:
            raise exceptions.OptionsError(
                f"Invalid choice for {opt.name}: {value!r} (choices: {', '.join(opt.choices)})"
            )
        return value

    def __getattr__(self, name):
        opts = object.__getattribute__(self, "_options")
        if name in opts:
            return opts[name].value
        raise AttributeError(f"No such option: {name}")

    def __setattr__(self, name, value):
        if name in ("on_change", "on_core_change", "deferred", "changed", "errored") \
                or name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            self.update(**{name: value})

    def __contains__(self, name):
        return name in self._options

    def keys(self):
        return set(self._options)

    def items(self):
        return [(k, o.value) for k, o in self._options.items()]

    def values(self):
        return [o.value for o in self._options.values()]

    def spec(self, name):
        return self._options[name]

    def update(self, **kwargs):
        """Sets options; `configure` hooks see the changed names; OptionsError rolls back."""
        self._apply({k: v for k, v in kwargs.items()}, notify=True)

    def update_defer(self, **kwargs):
        for name, value in kwargs.items():
            if name in self._options:
                self.update(**{name: value})
            else:
                self.deferred[name] = value

    def set(self, *specs, defer=False):
        """Applies `name=value` strings as `--set` does."""
        values = {}
        for spec in specs:
            name, _, text = spec.partition("=")
            if name not in self._options:
                if defer:
                    self.deferred[name] = text
                    continue
                raise exceptions.OptionsError(f"Unknown option: {name}")
            opt = self._options[name]
            values[name] = parse(name, opt.typespec, text, opt.value)
        if values:
            self.update(**values)

    def _apply(self, values, notify):
        unknown = [k for k in values if k not in self._options]
        if unknown:
            raise KeyError(f"Unknown options: {', '.join(unknown)}")
        old = {k: self._options[k].value for k in values}
        changed = set()
        for name, value in values.items():
            opt = self._options[name]
            value = self._validated(opt, value)
            if value != opt.value:
                opt.value = value
                changed.add(name)
        if not changed or not notify:
            return changed
        try:
            if self.on_change is not None:
                self.on_change(changed)
            self.changed.send(changed)
        except exceptions.OptionsError as e:
            # Roll back, tell the receivers the values they now have, and report it.
            for name, value in old.items():
                self._options[name].value = value
            self.errored.send(exc=e)
            self.changed.send(changed)
            raise
        except Exception:
            for name, value in old.items():
                self._options[name].value = value
            raise
        core = {k: self._options[k].value for k in changed if self._options[k].core}
        if core and self.on_core_change is not None:
            self.on_core_change(core)
        return changed

    @contextlib.contextmanager
    def rollback(self, updated, reraise=False):
        """Undoes the changes to `updated` if the block raises OptionsError (which is re-raised
        if `reraise`, else sent to `errored`)."""
        old = {k: copy.deepcopy(self._options[k].value) for k in updated if k in self._options}
        try:
            yield
        except exceptions.OptionsError as e:
            self.errored.send(exc=e)
            self.set_quietly(old)
            self.changed.send(set(old))
            if reraise:
                raise

    def subscribe(self, func, opts):
        """Calls `func(options, updated)` when one of the options `opts` changes; holds
        `func` weakly, so a subscriber that is gone stops being called."""
        unknown = set(opts) - set(self._options)
        if unknown:
            raise exceptions.OptionsError(f"No such option: {', '.join(sorted(unknown))}")
        ref = weakref.WeakMethod(func) if inspect.ismethod(func) else weakref.ref(func)
        self._subscriptions.append((ref, set(opts)))

    def _notify_subscribers(self, updated):
        alive = []
        for ref, names in self._subscriptions:
            func = ref()
            if func is None:
                continue
            alive.append((ref, names))
            if updated & names:
                func(self, updated)
        self._subscriptions[:] = alive

    def setter(self, attr):
        """A function that sets option `attr` to its argument."""
        if attr not in self._options:
            raise KeyError(f"No such option: {attr}")
        return lambda value: self.update(**{attr: value})

    def toggler(self, attr):
        """A function that flips boolean option `attr`."""
        if attr not in self._options:
            raise KeyError(f"No such option: {attr}")
        if self._options[attr].typespec != "bool":
            raise ValueError("Toggler can only be used with boolean options")
        return lambda: self.update(**{attr: not getattr(self, attr)})

    def merge(self, opts):
        """Sets the options of another Options object that changed there and exist here."""
        self.update(**{k: v for k, v in opts.items() if opts.has_changed(k) and k in self})

    def __deepcopy__(self, memo):
        copied = type(self).__new__(type(self))
        Options.__init__(copied)
        for name, opt in self._options.items():
            new = _Option(opt.name, opt.typespec, copy.deepcopy(opt.default), opt.help,
                          opt.choices, opt.core)
            new.value = copy.deepcopy(opt.value)
            copied._options[name] = new
        return copied

    def __copy__(self):
        return self.__deepcopy__({})

    def process_deferred(self):
        """Applies the deferred `--set` values of options that now exist."""
        known = {k: v for k, v in self.deferred.items() if k in self._options}
        for name in known:
            del self.deferred[name]
        values = {}
        for name, value in known.items():
            opt = self._options[name]
            values[name] = parse(name, opt.typespec, value, opt.value) \
                if isinstance(value, str) and opt.typespec != "str" else value
        if values:
            self.update(**values)

    def update_known(self, **kwargs):
        """Sets the options that exist; returns the rest."""
        known = {k: v for k, v in kwargs.items() if k in self._options}
        self.update(**known)
        return {k: v for k, v in kwargs.items() if k not in known}

    def reset(self):
        """Every option back to its default."""
        self.update(**{k: copy.deepcopy(o.default) for k, o in self._options.items()})

    def default(self, name):
        return copy.deepcopy(self._options[name].default)

    def has_changed(self, name):
        return self._options[name].has_changed()

    def set_quietly(self, values):
        """Sets values without firing `configure` (used by the host for core-side changes)."""
        return self._apply(values, notify=False)

    def __repr__(self):
        return f"Options({', '.join(f'{k}={o.value!r}' for k, o in self._options.items())})"


OptManager = Options
"""mitmproxy's name for the options container."""


def relative_path(script_path, *, relative_to):
    """`script_path` (from a config file) made absolute relative to `relative_to` (the
    config file's directory); `~` expands, absolute paths stay."""
    script_path = pathlib.Path(script_path).expanduser()
    return (pathlib.Path(relative_to) / script_path).absolute()
