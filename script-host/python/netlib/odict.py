"""`netlib.odict`: the ordered multidict of mitmproxy 0.x (query strings, forms, headers).

A list of `[key, value]` pairs; `d[key]` is the list of every value of `key` (`[]` when there
is none), `d[key] = [v1, v2]` replaces them all, iteration gives the pairs.
"""

import copy


class ODict:
    """An ordered multidict whose keys compare exactly (see `ODictCaseless`)."""

    def __init__(self, lst=None):
        self.lst = [list(pair) for pair in (lst or [])]

    def _kconv(self, key):
        return key

    def __eq__(self, other):
        return isinstance(other, ODict) and self.lst == other.lst

    def __ne__(self, other):
        return not self == other

    __hash__ = None

    def __iter__(self):
        return iter(self.lst)

    def __getitem__(self, key):
        key = self._kconv(key)
        return [v for k, v in self.lst if self._kconv(k) == key]

    def keys(self):
        seen = []
        for k, _ in self.lst:
            if k not in seen:
                seen.append(k)
        return seen

    def _filter_lst(self, key, lst):
        key = self._kconv(key)
        return [pair for pair in lst if self._kconv(pair[0]) != key]

    def __len__(self):
        return len(self.lst)

    def __setitem__(self, key, values):
        if isinstance(values, (str, bytes)):
            raise ValueError("Expected list of values instead of string. Example: odict[key] = [value]")
        new = self._filter_lst(key, self.lst)
        for value in values:
            new.append([key, value])
        self.lst = new

    def __delitem__(self, key):
        self.lst = self._filter_lst(key, self.lst)

    def __contains__(self, key):
        key = self._kconv(key)
        return any(self._kconv(k) == key for k, _ in self.lst)

    def add(self, key, value, prepend=False):
        if prepend:
            self.lst.insert(0, [key, value])
        else:
            self.lst.append([key, value])

    def get(self, key, default=None):
        return self[key] if key in self else default

    def get_first(self, key, default=None):
        values = self[key]
        return values[0] if values else default

    def items(self):
        return [tuple(pair) for pair in self.lst]

    def copy(self):
        return copy.deepcopy(self)

    def extend(self, other):
        self.lst.extend(list(pair) for pair in other)

    def in_any(self, key, value, caseless=False):
        values = self[key]
        if caseless:
            value = value.lower()
            values = [v.lower() for v in values]
        return any(value in v for v in values)

    def replace(self, pattern, repl, *args, **kwargs):
        import re
        count = 0
        new = []
        for k, v in self.lst:
            k, n1 = re.subn(pattern, repl, k, *args, **kwargs)
            v, n2 = re.subn(pattern, repl, v, *args, **kwargs)
            count += n1 + n2
            new.append([k, v])
        self.lst = new
        return count

    def get_state(self):
        return [tuple(pair) for pair in self.lst]

    @classmethod
    def from_state(cls, state):
        return cls([list(pair) for pair in state])

    def __repr__(self):
        return repr(self.lst)

    def __str__(self):
        return "".join(f"{k}: {v}\r\n" for k, v in self.lst)


class ODictCaseless(ODict):
    """An `ODict` whose keys compare case-insensitively (headers)."""

    def _kconv(self, key):
        return key.lower()
