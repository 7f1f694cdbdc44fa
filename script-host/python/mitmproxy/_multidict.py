"""Ordered multidicts: the storage behind headers, query strings, cookies and forms."""

from collections.abc import MutableMapping


class _MultiDictBase(MutableMapping):
    """A mapping over an ordered tuple of (key, value) pairs with repeated keys allowed.

    Item access reads the first value; assignment replaces every value of the key.
    """

    @staticmethod
    def _kconv(key):
        return key

    @staticmethod
    def _reduce_values(values):
        return values[0]

    def _get_fields(self):
        raise NotImplementedError

    def _set_fields(self, fields):
        raise NotImplementedError

    def __getitem__(self, key):
        values = self.get_all(key)
        if not values:
            raise KeyError(key)
        return self._reduce_values(values)

    def __setitem__(self, key, value):
        self.set_all(key, [value])

    def __delitem__(self, key):
        if key not in self:
            raise KeyError(key)
        k = self._kconv(key)
        self._set_fields(tuple(f for f in self._get_fields() if self._kconv(f[0]) != k))

    def __contains__(self, key):
        k = self._kconv(key)
        return any(self._kconv(f[0]) == k for f in self._get_fields())

    def __iter__(self):
        seen = set()
        for key, _ in self._get_fields():
            k = self._kconv(key)
            if k not in seen:
                seen.add(k)
                yield key

    def __len__(self):
        return len({self._kconv(k) for k, _ in self._get_fields()})

    def __eq__(self, other):
        if isinstance(other, _MultiDictBase):
            return self._get_fields() == other._get_fields()
        return False

    def __hash__(self):
        return id(self)

    def get_all(self, key):
        k = self._kconv(key)
        return [v for kk, v in self._get_fields() if self._kconv(kk) == k]

    def set_all(self, key, values):
        """Replaces the values of `key`: the first occurrences keep their place and spelling."""
        values = list(values)
        k = self._kconv(key)
        new = []
        for field in self._get_fields():
            if self._kconv(field[0]) == k:
                if values:
                    new.append((field[0], values.pop(0)))
            else:
                new.append(field)
        for v in values:
            new.append((key, v))
        self._set_fields(tuple(new))

    def add(self, key, value):
        self.insert(len(self._get_fields()), key, value)

    def insert(self, index, key, value):
        fields = list(self._get_fields())
        fields.insert(index, (key, value))
        self._set_fields(tuple(fields))

    def keys(self, multi=False):
        return (k for k, _ in self.items(multi))

    def values(self, multi=False):
        return (v for _, v in self.items(multi))

    def items(self, multi=False):
        if multi:
            return list(self._get_fields())
        return [(k, self[k]) for k in self]

    @property
    def fields(self):
        return self._get_fields()

    def __repr__(self):
        return f"{type(self).__name__}[{', '.join(repr(f) for f in self._get_fields())}]"


class MultiDict(_MultiDictBase):
    """A standalone ordered multidict."""

    def __init__(self, fields=()):
        self._fields = tuple(tuple(f) for f in fields)

    def _get_fields(self):
        return self._fields

    def _set_fields(self, fields):
        self._fields = tuple(fields)

    def copy(self):
        return MultiDict(self._fields)

    def get_state(self):
        return [list(f) for f in self._fields]

    def set_state(self, state):
        self._fields = tuple(tuple(f) for f in state)

    @classmethod
    def from_state(cls, state):
        return cls(state)


class MultiDictView(_MultiDictBase):
    """A live view: reads and writes go through a getter and a setter of the owning object."""

    def __init__(self, getter, setter):
        self._getter = getter
        self._setter = setter

    def _get_fields(self):
        return tuple(self._getter())

    def _set_fields(self, fields):
        self._setter(fields)

    def copy(self):
        return MultiDict(self._get_fields())
