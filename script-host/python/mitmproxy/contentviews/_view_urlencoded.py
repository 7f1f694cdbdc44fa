"""The "URL-encoded" view: form fields as YAML."""

import urllib.parse

from ._api import Contentview
from ._utils import byte_pairs_to_str_pairs, merge_repeated_keys, yaml_dumps


class URLEncodedContentview(Contentview):
    name = "URL-encoded"
    syntax_highlight = "yaml"

    def prettify(self, data, metadata):
        items = urllib.parse.parse_qsl(data, keep_blank_values=True)
        return yaml_dumps(merge_repeated_keys(byte_pairs_to_str_pairs(items)))

    def render_priority(self, data, metadata):
        return float(bool(data)
                     and metadata.content_type == "application/x-www-form-urlencoded")


urlencoded = URLEncodedContentview()
