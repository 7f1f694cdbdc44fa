"""The "Image" view: an image's format and header metadata as YAML."""

from .._api import Contentview
from .._utils import merge_repeated_keys, yaml_dumps
from . import image_parser

_PARSERS = {"png": image_parser.parse_png, "gif": image_parser.parse_gif,
            "jpeg": image_parser.parse_jpeg, "ico": image_parser.parse_ico}


class ImageContentview(Contentview):
    syntax_highlight = "yaml"

    def prettify(self, data, metadata):
        kind = image_parser.image_type(data)
        title = f"{kind.upper()} Image" if kind else "Unknown Image"
        parts = _PARSERS[kind](data) if kind in _PARSERS else []
        return f"# {title}\n" + yaml_dumps(merge_repeated_keys(parts))

    def render_priority(self, data, metadata):
        ct = metadata.content_type
        return float(bool(ct and ct.startswith("image/") and not ct.endswith("+xml")))


image = ImageContentview()
