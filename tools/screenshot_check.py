"""Open each executed notebook's HTML in headless Chromium, take a screenshot and check that the
pictures are displayed: the page must contain many strongly coloured pixels (heatmaps, graphs),
not just text. Usage: screenshot_check.py HTML_DIR SHOT_DIR"""
import pathlib
import struct
import subprocess
import sys
import tempfile
import zlib


def decode_png(data):
    """Minimal PNG decoder: 8-bit RGB/RGBA, non-interlaced (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, w = 8, b"", 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and ctype in (2, 6) and interlace == 0, (depth, ctype, interlace)
            bpp = 4 if ctype == 6 else 3
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = w * bpp
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, bpp, rows


def coloured_pixels(w, h, bpp, rows):
    n = 0
    for r in rows:
        for x in range(0, w * bpp, bpp * 2):  # every other pixel is plenty
            px = r[x:x + 3]
            if max(px) - min(px) > 80:
                n += 1
    return n


def main():
    src, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    dst.mkdir(parents=True, exist_ok=True)
    failures = []
    pages = sorted(src.glob("*.html"))
    if not pages:
        print(f"no HTML pages in {src}")
        sys.exit(1)
    for page in pages:
        shot = dst / (page.stem + ".png")
        with tempfile.TemporaryDirectory() as profile:
            subprocess.run(
                ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", "--hide-scrollbars", "--window-size=1280,5000",
                 f"--screenshot={shot}", page.resolve().as_uri()],
                check=True, capture_output=True, timeout=120)
        w, h, bpp, rows = decode_png(shot.read_bytes())
        n = coloured_pixels(w, h, bpp, rows)
        print(f"{page.name}: screenshot {w}x{h}, {n} coloured pixels sampled -> {shot}")
        if n < 2000:
            failures.append(f"{page.name}: pictures not displayed ({n} coloured pixels)")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print(f"all {len(pages)} pages show their pictures")


if __name__ == "__main__":
    main()
