"""Image metadata for the "Image" view: format, size and the text the file carries, as
(key, value) pairs of strings. Reads headers and metadata blocks only; a truncated file gives
what could be read before the end."""

import struct
import zlib


def image_type(data):
    """"png", "gif", "jpeg", "ico", "webp", or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data.startswith(b"\xff\xd8"):
        return "jpeg"
    if data.startswith(b"\x00\x00\x01\x00"):
        return "ico"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def _png_chunks(data):
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        yield kind, data[pos + 8:pos + 8 + length]
        if kind == b"IEND":
            return
        pos += 12 + length


def parse_png(data):
    """Size, then gamma, aspect and text chunks in file order (PNG spec section 11)."""
    parts = [("Format", "Portable network graphics")]
    for kind, body in _png_chunks(data):
        if kind == b"IHDR" and len(body) >= 8:
            width, height = struct.unpack(">II", body[:8])
            parts.append(("Size", f"{width} x {height} px"))
        elif kind == b"gAMA" and len(body) >= 4:
            parts.append(("gamma", str(struct.unpack(">I", body[:4])[0] / 100000)))
        elif kind == b"pHYs" and len(body) >= 8:
            x, y = struct.unpack(">II", body[:8])
            parts.append(("aspect", f"{x} x {y}"))
        elif kind == b"tEXt" and b"\x00" in body:
            key, _, text = body.partition(b"\x00")
            parts.append((key.decode("latin-1"), text.decode("latin-1")))
        elif kind == b"zTXt" and b"\x00" in body:
            key, _, rest = body.partition(b"\x00")
            try:  # rest[0] is the compression method, always zlib
                parts.append((key.decode("latin-1"), zlib.decompress(rest[1:]).decode("latin-1")))
            except zlib.error:
                pass
        elif kind == b"iTXt" and b"\x00" in body:
            key, _, rest = body.partition(b"\x00")
            compressed, rest = rest[0:1] == b"\x01", rest[2:]
            _language, _, rest = rest.partition(b"\x00")
            _translated, _, text = rest.partition(b"\x00")
            try:
                text = zlib.decompress(text) if compressed else text
                parts.append((key.decode("latin-1"), text.decode("utf-8", "replace")))
            except zlib.error:
                pass
    return parts


def _gif_sub_blocks(data, pos):
    """The concatenated data sub-blocks at `pos`, and the position after the terminator."""
    out = b""
    while pos < len(data):
        size = data[pos]
        pos += 1
        if size == 0:
            break
        out += data[pos:pos + size]
        pos += size
    return out, pos


def parse_gif(data):
    """Version, size, background colour index and comments (GIF89a specification)."""
    parts = [("Format", "Compuserve GIF"), ("Version", data[:6].decode("ascii", "replace"))]
    if len(data) < 13:
        return parts
    width, height, packed, background = struct.unpack("<HHBB", data[6:12])
    parts += [("Size", f"{width} x {height} px"), ("background", str(background))]
    pos = 13 + (3 * 2 ** ((packed & 7) + 1) if packed & 0x80 else 0)
    while pos < len(data):
        introducer = data[pos]
        if introducer == 0x21 and pos + 1 < len(data):  # extension
            label = data[pos + 1]
            block, pos = _gif_sub_blocks(data, pos + 2)
            if label == 0xFE:
                parts.append(("comment", repr(block)))
        elif introducer == 0x2C and pos + 10 <= len(data):  # image descriptor
            flags = data[pos + 9]
            pos += 10 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
            _, pos = _gif_sub_blocks(data, pos + 1)  # skip the LZW minimum code size
        else:
            break
    return parts


def _exif(body):
    """make, model and modify_date from an Exif APP1 segment's first IFD."""
    if not body.startswith(b"Exif\x00\x00") or len(body) < 14:
        return []
    tiff = body[6:]
    endian = "<" if tiff[:2] == b"II" else ">"
    (offset,) = struct.unpack(endian + "I", tiff[4:8])
    if offset + 2 > len(tiff):
        return []
    (count,) = struct.unpack(endian + "H", tiff[offset:offset + 2])
    names = {0x010F: "make", 0x0110: "model", 0x0132: "modify_date"}
    found = {}
    for i in range(count):
        entry = tiff[offset + 2 + 12 * i:offset + 14 + 12 * i]
        if len(entry) < 12:
            break
        tag, kind, n = struct.unpack(endian + "HHI", entry[:8])
        if tag in names and kind == 2:  # ASCII
            start = struct.unpack(endian + "I", entry[8:])[0] if n > 4 else None
            raw = entry[8:8 + n] if start is None else tiff[start:start + n]
            found[tag] = raw.rstrip(b"\x00").decode("latin-1")
    return [(names[t], found[t]) for t in sorted(found)]


def parse_jpeg(data):
    """JFIF header, comments, Exif camera fields and size, in file order (ISO 10918-1)."""
    parts = [("Format", "JPEG (ISO 10918)")]
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xDA:  # start of scan: the image data follows
            break
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        body = data[pos + 4:pos + 2 + length]
        if marker == 0xE0 and body.startswith(b"JFIF\x00") and len(body) >= 12:
            major, minor, unit, x, y = struct.unpack(">BBBHH", body[5:12])
            parts += [("jfif_version", str((major, minor))), ("jfif_density", str((x, y))),
                      ("jfif_unit", str(unit))]
        elif marker == 0xE1:
            parts += _exif(body)
        elif marker == 0xFE:
            parts.append(("comment", body.decode("ascii", "backslashreplace")))
        elif marker in (0xC0, 0xC1, 0xC2) and len(body) >= 5:
            height, width = struct.unpack(">HH", body[1:5])
            parts.append(("Size", f"{width} x {height} px"))
        pos += 2 + length
    return parts


def parse_ico(data):
    """The images in an ICO file: size, bits per pixel, and whether each is a PNG."""
    parts = [("Format", "ICO")]
    if len(data) < 6:
        return parts
    (count,) = struct.unpack("<H", data[4:6])
    parts.append(("Number of images", str(count)))
    for i in range(count):
        entry = data[6 + 16 * i:22 + 16 * i]
        if len(entry) < 16:
            break
        width, height = entry[0] or 256, entry[1] or 256
        bpp, _size, offset = struct.unpack("<HII", entry[6:16])
        is_png = data[offset:offset + 8] == b"\x89PNG\r\n\x1a\n"
        pad = " " * 18
        parts.append((f"Image {i + 1}",
                      f"Size: {width} x {height}\n{pad}Bits per pixel: {bpp}\n{pad}PNG: {is_png}"))
    return parts
