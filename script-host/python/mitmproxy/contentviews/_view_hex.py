"""The "Hex Dump" and "Hex Stream" views."""

from mitmproxy.utils import strutils

from ._api import Contentview


class HexDumpContentview(Contentview):
    name = "Hex Dump"

    def prettify(self, data, metadata):
        return "\n".join(f"{offset} {hexes} {text}"
                         for offset, hexes, text in strutils.hexdump(data))

    def render_priority(self, data, metadata):
        return 0.2 * float(strutils.is_mostly_bin(data))


class HexStreamContentview(Contentview):
    name = "Hex Stream"

    def prettify(self, data, metadata):
        return data.hex()

    def reencode(self, prettified, metadata):
        return bytes.fromhex(prettified.strip())


hex_dump = HexDumpContentview()
hex_stream = HexStreamContentview()
