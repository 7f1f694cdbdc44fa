"""The "Multipart Form" view: multipart/form-data fields as YAML."""

from mitmproxy.net.http.multipart import decode_multipart

from ._api import Contentview
from ._utils import byte_pairs_to_str_pairs, merge_repeated_keys, yaml_dumps


class MultipartContentview(Contentview):
    name = "Multipart Form"
    syntax_highlight = "yaml"

    def prettify(self, data, metadata):
        if not metadata.http_message:
            raise ValueError("Not an HTTP message")
        items = decode_multipart(metadata.http_message.headers["content-type"], data)
        return yaml_dumps(merge_repeated_keys(byte_pairs_to_str_pairs(items)))

    def render_priority(self, data, metadata):
        return float(bool(data) and metadata.content_type == "multipart/form-data")


multipart = MultipartContentview()
