"""`netlib.http` of mitmproxy 0.15-0.18: `Headers` with `str` values (`Content_Type="x"`)."""

from mitmproxy.http import Headers as _Headers


class Headers(_Headers):
    """0.15's `Headers(fields=None, **headers)`: fields may be str pairs, keyword names use `_`
    for `-`."""

    def __init__(self, fields=None, **headers):
        fields = [tuple(x.encode("utf-8", "surrogateescape") if isinstance(x, str) else x
                        for x in pair) for pair in (fields or ())]
        super().__init__(fields, **headers)
