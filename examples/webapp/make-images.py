#!/usr/bin/env python3
"""Write the example's pictures to images/: small RGB PNGs drawn from
formulas, so the bytes are the same on every run.

Usage: python3 make-images.py [OUT_DIR]   (default: images next to this file)
"""

import os
import struct
import sys
import zlib


def png(width, height, pixel):
    """Encode a width x height RGB picture, where pixel(x, y) returns (r, g, b)."""
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter type None for every row
        for x in range(width):
            rows.extend(pixel(x, y))

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + chunk(b"IEND", b"")
    )


PICTURES = {
    "gradient.png": (64, 64, lambda x, y: (x * 4, y * 4, 128)),
    "checkers.png": (
        48,
        48,
        lambda x, y: (240, 240, 240) if (x // 8 + y // 8) % 2 else (30, 30, 30),
    ),
    "rings.png": (
        64,
        64,
        lambda x, y: (0, ((x - 32) ** 2 + (y - 32) ** 2) % 256, 200),
    ),
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "images")
    os.makedirs(out, exist_ok=True)
    for name, (width, height, pixel) in sorted(PICTURES.items()):
        data = png(width, height, pixel)
        with open(os.path.join(out, name), "wb") as file:
            file.write(data)
        print(f"{name}: {width}x{height}, {len(data)} bytes")


if __name__ == "__main__":
    main()
