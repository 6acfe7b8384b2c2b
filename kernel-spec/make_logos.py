"""Regenerate the kernel logos (stdlib only): python3 kernel-spec/make_logos.py"""
import struct, zlib, os

def png(size):
    bg, bars = (28, 37, 65), [(0.35, (94, 196, 182)), (0.8, (247, 146, 86)), (0.55, (94, 196, 182)), (0.95, (247, 146, 86))]
    r = size * 0.18  # corner radius
    rows = []
    for y in range(size):
        row = bytearray([0])
        for x in range(size):
            # rounded square mask
            cx = min(max(x + 0.5, r), size - r); cy = min(max(y + 0.5, r), size - r)
            inside = (x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2 <= r * r
            px = (0, 0, 0, 0)
            if inside:
                px = bg + (255,)
                margin, gap = size * 0.16, size * 0.05
                w = (size - 2 * margin - 3 * gap) / 4
                for i, (h, col) in enumerate(bars):
                    x0 = margin + i * (w + gap)
                    top = size - margin - h * (size - 2 * margin)
                    if x0 <= x + 0.5 < x0 + w and top <= y + 0.5 < size - margin:
                        px = col + (255,)
            row += bytes(px)
        rows.append(bytes(row))
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"".join(rows), 9)) + chunk(b"IEND", b"")

here = os.path.dirname(os.path.abspath(__file__))
for s in (32, 64):
    with open(os.path.join(here, f"logo-{s}x{s}.png"), "wb") as f:
        f.write(png(s))
