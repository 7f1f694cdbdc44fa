"""`mitmproxy.io.tnetstring`: tnetstrings, the encoding of mitmproxy's flow files.

A value is `LENGTH:DATA` followed by a type tag: `,` bytes, `;` UTF-8 text, `#` int, `^` float,
`!` bool, `~` null, `]` list, `}` dict. `dumps`/`loads` convert one value, `pop` reads one
value from the front of a buffer and returns the rest. Malformed input raises ValueError.
"""

# Deep nesting is refused rather than exhausting the stack (flow states nest a few levels).
MAX_DEPTH = 64


def dumps(value):
    """The tnetstring of `value` (bytes, str, int, float, bool, None, list/tuple, dict)."""
    chunks = []
    _dump(value, chunks, 0)
    return b"".join(reversed(chunks))


def dump(value, file_handle):
    file_handle.write(dumps(value))


def _dump(value, chunks, depth):
    # Chunks are appended back to front: the length prefix is known only after the payload.
    if depth > MAX_DEPTH:
        raise ValueError(f"tnetstring nested more than {MAX_DEPTH} deep")
    if value is None:
        chunks.append(b"0:~")
        return
    if value is True:
        chunks.append(b"4:true!")
        return
    if value is False:
        chunks.append(b"5:false!")
        return
    if isinstance(value, int):
        payload, tag = str(value).encode(), b"#"
    elif isinstance(value, float):
        payload, tag = repr(value).encode(), b"^"
    elif isinstance(value, bytes):
        payload, tag = value, b","
    elif isinstance(value, str):
        payload, tag = value.encode(), b";"
    elif isinstance(value, (list, tuple, dict)):
        start = len(chunks)
        chunks.append(b"}" if isinstance(value, dict) else b"]")
        items = value.items() if isinstance(value, dict) else ((v,) for v in value)
        for item in reversed(list(items)):
            for part in reversed(item):
                if isinstance(value, dict) and part is item[0] and not isinstance(part, (bytes, str)):
                    raise ValueError(f"unserializable dict key: {part!r}")
                _dump(part, chunks, depth + 1)
        size = sum(len(c) for c in chunks[start + 1:])
        chunks.append(b":")
        chunks.append(str(size).encode())
        return
    else:
        raise ValueError(f"unserializable object: {value!r} ({type(value).__name__})")
    chunks.append(tag)
    chunks.append(payload)
    chunks.append(b":")
    chunks.append(str(len(payload)).encode())


def loads(string):
    """The value a tnetstring holds; ValueError if it is malformed or has trailing bytes."""
    value, rest = pop(string)
    if rest:
        raise ValueError("not a tnetstring: trailing data")
    return value


def load(file_handle):
    """Reads one value from a binary file; ValueError at a malformed one, EOFError at the end."""
    digits = b""
    while True:
        c = file_handle.read(1)
        if not c:
            raise EOFError("end of file")
        if c == b":":
            break
        if not c.isdigit() or len(digits) > 12:
            raise ValueError("not a tnetstring: missing or invalid length prefix")
        digits += c
    if not digits:
        raise ValueError("not a tnetstring: missing or invalid length prefix")
    size = int(digits)
    payload = file_handle.read(size)
    tag = file_handle.read(1)
    if len(payload) != size or len(tag) != 1:
        raise ValueError("not a tnetstring: invalid length prefix")
    return _parse(payload, tag, 0)


def pop(data):
    """`(value, rest)`: the first value of `data` and the bytes after it."""
    return _pop(memoryview(data).tobytes() if not isinstance(data, bytes) else data, 0)


def _pop(data, depth):
    if depth > MAX_DEPTH:
        raise ValueError(f"tnetstring nested more than {MAX_DEPTH} deep")
    colon = data.find(b":", 0, 13)
    if colon <= 0 or not data[:colon].isdigit():
        raise ValueError(f"not a tnetstring: missing or invalid length prefix: {data[:20]!r}")
    size = int(data[:colon])
    end = colon + 1 + size
    if end >= len(data):
        raise ValueError(f"not a tnetstring: invalid length prefix: {size}")
    return _parse(data[colon + 1:end], data[end:end + 1], depth), data[end + 1:]


def _parse(payload, tag, depth):
    if tag == b",":
        return payload
    if tag == b";":
        try:
            return payload.decode()
        except UnicodeDecodeError as e:
            raise ValueError(f"not a tnetstring: invalid UTF-8: {e}") from None
    if tag == b"#":
        try:
            return int(payload)
        except ValueError:
            raise ValueError(f"not a tnetstring: invalid integer literal: {payload!r}") from None
    if tag == b"^":
        try:
            return float(payload)
        except ValueError:
            raise ValueError(f"not a tnetstring: invalid float literal: {payload!r}") from None
    if tag == b"!":
        if payload in (b"true", b"false"):
            return payload == b"true"
        raise ValueError(f"not a tnetstring: invalid boolean literal: {payload!r}")
    if tag == b"~":
        if payload:
            raise ValueError("not a tnetstring: invalid null literal")
        return None
    if tag == b"]":
        items = []
        while payload:
            item, payload = _pop(payload, depth + 1)
            items.append(item)
        return items
    if tag == b"}":
        result = {}
        while payload:
            key, payload = _pop(payload, depth + 1)
            if not payload:
                raise ValueError("not a tnetstring: dict key without a value")
            value, payload = _pop(payload, depth + 1)
            try:
                result[key] = value
            except TypeError:
                raise ValueError(f"not a tnetstring: unhashable dict key: {key!r}") from None
        return result
    raise ValueError(f"unknown type tag: {tag!r}")
