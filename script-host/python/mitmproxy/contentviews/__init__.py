"""`mitmproxy.contentviews`: turning bodies and messages into text for people.

`prettify_message(message, flow, view_name="auto")` picks a view (the one whose
`render_priority` is highest, or the one named) and returns its text; `add(view)` registers a
script's own view (a `Contentview`, or a pre-12 `View`), `remove(view)` takes one away.
Built-in views: Raw, JSON, XML/HTML, URL-encoded, Multipart Form, Query, Image, Hex Dump,
Hex Stream.
"""

import logging
import sys
import traceback
import warnings
from dataclasses import dataclass

from mitmproxy.addonmanager import cut_traceback
from mitmproxy.utils import strutils

from ._api import Contentview, InteractiveContentview, Metadata, SyntaxHighlight
from ._registry import ContentviewRegistry
from ._utils import get_data, make_metadata
from ._view_hex import hex_dump, hex_stream
from ._view_image import image
from ._view_json import json_view
from ._view_multipart import multipart
from ._view_query import query
from ._view_raw import raw
from ._view_urlencoded import urlencoded
from ._view_xml_html import xml_html
from .base import View

logger = logging.getLogger(__name__)

__all__ = ["Contentview", "InteractiveContentview", "Metadata", "SyntaxHighlight",
           "ContentviewRegistry", "ContentviewResult", "View", "registry", "prettify_message",
           "reencode_message", "add", "remove", "get"]


@dataclass
class ContentviewResult:
    text: str
    syntax_highlight: str
    view_name: str
    description: str


registry = ContentviewRegistry()
for _view in (hex_dump, hex_stream, image, json_view, multipart, query, raw, urlencoded,
              xml_html):
    registry.register(_view)


def prettify_message(message, flow, view_name="auto", registry=registry):
    """The message's content as text: by the named view, or the best one for "auto" (which
    falls back to Raw when the chosen view fails)."""
    data, enc = get_data(message)
    if data is None:
        return ContentviewResult("Content is missing.", "error", None, "")
    metadata = make_metadata(message, flow)
    view = registry.get_view(data, metadata, view_name)
    try:
        result = ContentviewResult(view.prettify(data, metadata), view.syntax_highlight,
                                   view.name, enc)
    except Exception as e:
        logger.debug(f"Contentview {view.name!r} failed: {e}", exc_info=True)
        if view_name == "auto":
            result = ContentviewResult(raw.prettify(data, metadata), raw.syntax_highlight,
                                       raw.name, f"{enc}[failed to parse as {view.name}]")
        else:
            etype, value, tb = sys.exc_info()
            cut = cut_traceback(tb, "prettify_message")
            error = "".join(traceback.format_exception(etype, value, None if cut is tb else cut))
            result = ContentviewResult(f"Couldn't parse as {view.name}:\n{error}", "error",
                                       view.name, enc)
    result.text = strutils.escape_control_characters(result.text)
    return result


def reencode_message(prettified, message, flow, view_name):
    """The data for edited text of an interactive view."""
    view = registry[view_name.lower()]
    if not hasattr(view, "reencode"):
        raise ValueError(f"Contentview {view.name} is not interactive.")
    return view.reencode(prettified, make_metadata(message, flow))


class LegacyContentview(Contentview):
    """A pre-12 `View` as a `Contentview`."""

    def __init__(self, contentview):
        self.contentview = contentview

    @property
    def name(self):
        return self.contentview.name

    def prettify(self, data, metadata):
        lines = self.contentview(data, content_type=metadata.content_type,
                                 flow=metadata.flow, http_message=metadata.http_message)
        _, lines = lines
        return "\n".join("".join(t.decode("utf-8", "replace") if isinstance(t, bytes) else t
                                 for _, t in line) for line in lines)

    def render_priority(self, data, metadata):
        return self.contentview.render_priority(
            data, content_type=metadata.content_type, flow=metadata.flow,
            http_message=metadata.http_message)


def add(contentview):
    """Registers a view: a `Contentview` (instance or class) or a pre-12 `View`."""
    if isinstance(contentview, View):
        warnings.warn(f"`mitmproxy.contentviews.View` is deprecated since mitmproxy 12, migrate "
                      f"{contentview.__class__.__name__} to "
                      "`mitmproxy.contentviews.Contentview` instead.", stacklevel=2)
        contentview = LegacyContentview(contentview)
    registry.register(contentview)


def remove(contentview):
    """Unregisters a view (by the object or its name); nothing if it is not registered."""
    name = contentview if isinstance(contentview, str) else contentview.name
    registry._by_name.pop(name.lower(), None)


def get(name):
    """The view called `name`, or None."""
    return registry.get(name.lower())
