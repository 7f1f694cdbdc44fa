"""The contentview interface: `Contentview`, `InteractiveContentview`, `Metadata`."""

import typing
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path

SyntaxHighlight = typing.Literal["css", "javascript", "xml", "yaml", "none", "error"]


@typing.runtime_checkable
class Contentview(typing.Protocol):
    """Turns raw data (a body, a message) into text for people.

    `prettify` may raise (ValueError, ...) for data it cannot show; `render_priority` says how
    well the view fits the data (the highest wins in "auto"; below 0: not at all).
    """

    @property
    def name(self):
        """The view's name, by default the class name without "Contentview"."""
        return type(self).__name__.removesuffix("Contentview")

    @property
    def syntax_highlight(self):
        return "none"

    @abstractmethod
    def prettify(self, data, metadata):
        """The text for `data`."""

    def render_priority(self, data, metadata):
        return 0

    def __lt__(self, other):
        return self.name.__lt__(other.name)


@typing.runtime_checkable
class InteractiveContentview(Contentview, typing.Protocol):
    """A view whose text can be edited and turned back into data."""

    @abstractmethod
    def reencode(self, prettified, metadata):
        """The data for the (edited) text."""


@dataclass
class Metadata:
    """What is known about the data: any field may be None."""

    flow: typing.Any = None
    content_type: typing.Optional[str] = None
    http_message: typing.Any = None
    tcp_message: typing.Any = None
    udp_message: typing.Any = None
    websocket_message: typing.Any = None
    dns_message: typing.Any = None
    protobuf_definitions: typing.Optional[Path] = None
    original_data: typing.Optional[bytes] = None
