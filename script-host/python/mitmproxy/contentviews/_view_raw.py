"""The "Raw" view: the data as UTF-8, undecodable bytes as `\\xNN`."""

from ._api import Contentview


class RawContentview(Contentview):
    def prettify(self, data, metadata):
        return data.decode("utf-8", "backslashreplace")

    def render_priority(self, data, metadata):
        return 0.1


raw = RawContentview()
