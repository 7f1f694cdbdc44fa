"""`mitmproxy.coretypes.serializable`: objects that save and restore their state.

`Serializable` is the interface (`get_state`, `set_state`, `from_state`, `copy`).
`SerializableDataclass` implements it for a dataclass from its field types: nested
serializables, `list`/`Sequence`, `tuple`, `dict`, `X | None`, `Literal`, enums and scalars, each
checked on the way in (ValueError for state of the wrong shape). A field with
`metadata={"serialize": False}` is left out.
"""

import abc
import collections.abc
import dataclasses
import enum
import functools
import types
import typing
import uuid

State = typing.Any


class Serializable(metaclass=abc.ABCMeta):
    """An object whose state can be saved and restored."""

    @classmethod
    @abc.abstractmethod
    def from_state(cls, state):
        """A new object from `state` (which it may consume)."""

    @abc.abstractmethod
    def get_state(self):
        """The object's state."""

    @abc.abstractmethod
    def set_state(self, state):
        """Restores `state` (FrozenInstanceError if the object is immutable)."""

    def copy(self):
        """A copy with a fresh `id` if the state has one."""
        state = self.get_state()
        if isinstance(state, dict) and "id" in state:
            state["id"] = str(uuid.uuid4())
        return self.from_state(state)


class SerializableDataclass(Serializable):
    """`Serializable` derived from the dataclass fields' types."""

    @classmethod
    @functools.cache
    def _serialized_fields(cls):
        hints = typing.get_type_hints(cls)
        out = []
        for field in dataclasses.fields(cls):
            if field.metadata.get("serialize", True) is False:
                continue
            if isinstance(field.type, str):
                field.type = hints[field.name]
            out.append(field)
        return tuple(out)

    def get_state(self):
        return {f.name: _to_state(getattr(self, f.name), f.type, f.name)
                for f in self._serialized_fields()}

    @classmethod
    def from_state(cls, state):
        for f in cls._serialized_fields():
            state[f.name] = _to_val(state[f.name], f.type, f.name)
        try:
            return cls(**state)
        except TypeError as e:
            raise ValueError(f"Invalid state for {cls}: {e} ({state=})") from e

    def set_state(self, state):
        for f in self._serialized_fields():
            current = getattr(self, f.name)
            f_state = state.pop(f.name)
            if isinstance(current, Serializable) and f_state is not None:
                try:
                    current.set_state(f_state)
                    continue
                except dataclasses.FrozenInstanceError:
                    pass
            try:
                setattr(self, f.name, _to_val(f_state, f.type, f.name))
            except dataclasses.FrozenInstanceError:
                state[f.name] = f_state  # the caller's state stays whole
                raise
        if state:
            raise ValueError(f"Unexpected fields in {type(self).__name__}.set_state: {state}")


def _invalid(name, expected, value):
    return ValueError(f"Invalid value for {name}. Expected {expected}, got {value} "
                      f"({type(value)}).")


def _process(value, typ, name, make):
    """`value` converted from state (`make`) or to state, as type `typ` says."""
    origin = typing.get_origin(typ)
    if origin is typing.Literal:
        if value not in typing.get_args(typ):
            raise ValueError(f"Invalid value for {name}: {value!r} does not match any "
                             "literal value.")
        return value
    if origin in (types.UnionType, typing.Union):
        inner, none = typing.get_args(typ)
        if none is not type(None):
            raise TypeError(f"{name}: only `x | None` union types are supported")
        return None if value is None else _process(value, inner, name, make)
    if value is None:
        raise ValueError(f"Attribute {name} must not be None.")
    if make and hasattr(typ, "from_state"):
        return typ.from_state(value)
    if not make and hasattr(typ, "get_state"):
        return value.get_state()
    if origin in (list, collections.abc.Sequence):
        (item,) = typing.get_args(typ)
        return [_process(x, item, name, make) for x in value]
    if origin is tuple:
        if name in ("peername", "sockname"):  # IPv6 addresses carry flowinfo and scope id
            return tuple(_process(x, t, name, make) for x, t in zip(value, (str, int, int, int)))
        item_types = typing.get_args(typ)
        if len(item_types) != len(value):
            raise ValueError(f"Invalid data for {name}. Expected {item_types}, got {value}.")
        return tuple(_process(x, t, name, make) for t, x in zip(item_types, value))
    if origin is dict:
        key_type, value_type = typing.get_args(typ)
        return {_process(k, key_type, name, make): _process(v, value_type, name, make)
                for k, v in value.items()}
    if typ in (int, float):
        if not isinstance(value, (int, float)):
            raise _invalid(name, typ, value)
        return typ(value)
    if typ in (str, bytes, bool):
        if not isinstance(value, typ):
            raise _invalid(name, typ, value)
        return typ(value)
    if isinstance(typ, type) and issubclass(typ, enum.Enum):
        return typ(value) if make else value.value
    raise TypeError(f"Unexpected type for {name}: {typ!r}")


def _to_val(state, typ, name):
    return _process(state, typ, name, True)


def _to_state(value, typ, name):
    return _process(value, typ, name, False)
