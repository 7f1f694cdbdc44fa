"""Image metadata for the "Image" view: format, size and a few header fields, as (key, value)
pairs of strings. Parses only headers; a truncated or odd file gives what could be read."""

import struct

_PNG_COLOR_TYPES = {0: "grayscale", 2: "truecolor", 3: "palette", 4: "grayscale with alpha",
                    6: "truecolor with alpha"}


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


def parse_png(data):
    parts = [("Format", "Portable network graphics")]
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR" and len(body) >= 10:
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            parts += [("Size", f"{width} x {height} px"), ("Bit depth", str(depth)),
                      ("Color type", _PNG_COLOR_TYPES.get(color, str(color)))]
        elif kind == b"tEXt" and b"\x00" in body:
            key, _, value = body.partition(b"\x00")
            parts.append((key.decode("latin-1"), value.decode("latin-1")))
        elif kind == b"IEND":
            break
        pos += 12 + length
    return parts


def parse_gif(data):
    parts = [("Format", "Compuserve GIF"), ("Version", data[:6].decode("ascii", "replace"))]
    if len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        parts.append(("Size", f"{width} x {height} px"))
    return parts


def parse_jpeg(data):
    parts = [("Format", "JPEG (ISO 10918)")]
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if marker in (0xC0, 0xC1, 0xC2) and pos + 9 <= len(data):
            height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
            parts.append(("Size", f"{width} x {height} px"))
            break
        pos += 2 + length
    return parts


def parse_ico(data):
    parts = [("Format", "ICO")]
    if len(data) >= 6:
        (count,) = struct.unpack("<H", data[4:6])
        parts.append(("Number of images", str(count)))
        for i in range(count):
            entry = data[6 + 16 * i:22 + 16 * i]
            if len(entry) < 16:
                break
            width, height = entry[0] or 256, entry[1] or 256
            parts.append((f"Image {i + 1}", f"{width} x {height} px"))
    return parts
