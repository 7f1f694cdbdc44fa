"""`mitmproxy.coretypes.multidict`: ordered multi-valued dicts (headers, query, forms).

`MultiDict` owns its fields; `MultiDictView` reads and writes them through a getter and setter
(`request.query` is a view on the URL).
"""

from mitmproxy._multidict import MultiDict, MultiDictView, _MultiDictBase as _MultiDict

__all__ = ["MultiDict", "MultiDictView", "_MultiDict"]
