"""The "Query" view: a request's query parameters as YAML (for requests without a body)."""

from mitmproxy import http

from ._api import Contentview
from ._utils import merge_repeated_keys, yaml_dumps


class QueryContentview(Contentview):
    syntax_highlight = "yaml"

    def prettify(self, data, metadata):
        if not isinstance(metadata.http_message, http.Request):
            raise ValueError("Not an HTTP request.")
        return yaml_dumps(merge_repeated_keys(metadata.http_message.query.items(multi=True)))

    def render_priority(self, data, metadata):
        return 0.3 * float(not data and bool(getattr(metadata.http_message, "query", False)))


query = QueryContentview()
