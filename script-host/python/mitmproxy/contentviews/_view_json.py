"""The "JSON" view: indented JSON, for `application/json` and `application/*+json`."""

import json

from ._api import Contentview


class JSONContentview(Contentview):
    syntax_highlight = "yaml"

    def prettify(self, data, metadata):
        return json.dumps(json.loads(data), indent=4, ensure_ascii=False)

    def render_priority(self, data, metadata):
        ct = metadata.content_type
        if not data or not ct:
            return 0
        if ct in ("application/json", "application/json-rpc"):
            return 1
        return float(ct.startswith("application/") and ct.endswith("json"))


json_view = JSONContentview()
