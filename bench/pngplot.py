"""Line charts in a PNG with nothing but the standard library (no plotting library is
installed on the development machines, and the bench needs none): panels in a grid, each
with a title, a line per series, its y range from 0 and a legend. Text in a 5x7 bitmap
font of lowercase letters, digits and a little punctuation (upper case drawn as lower)."""
import struct
import zlib

# each glyph: 7 rows of 5 pixels, a row a byte (bit 4 the leftmost), in hex
FONT = {
    "0": "0e11131519110e", "1": "040c040404040e", "2": "0e11010204081f",
    "3": "1f02040201110e", "4": "02060a121f0202", "5": "1f101e0101110e",
    "6": "0608101e11110e", "7": "1f010204080808", "8": "0e11110e11110e",
    "9": "0e11110f01020c", "a": "00000e010f110f", "b": "1010161911111e",
    "c": "00000e1010110e", "d": "01010d1311110f", "e": "00000e111f100e",
    "f": "0609081c080808", "g": "00000f110f010e", "h": "10101619111111",
    "i": "04000c0404040e", "j": "0200060202120c",
    "k": "10101214181412", "l": "0c04040404040e", "m": "00001a15151111",
    "n": "00001619111111", "o": "00000e1111110e", "p": "00001e111e1010",
    "q": "00000d130f0101", "r": "00001619101010", "s": "00000e100e011e",
    "t": "08081c08080906", "u": "0000111111130d", "v": "00001111110a04",
    "w": "0000111115150a", "x": "0000110a040a11",
    "y": "000011110f010e", "z": "00001f0204081f",
    " ": "00000000000000", ".": "00000000000c0c", ",": "000000000c0408",
    "-": "0000001f000000", "_": "0000000000001f", "(": "02040808080402",
    ")": "08040202020408", "/": "00010204081000", ":": "000c0c000c0c00",
    "%": "18190204081303", "+": "0004041f040400",
}
COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)]
WHITE, BLACK, GREY = (255, 255, 255), (0, 0, 0), (200, 200, 200)
PANEL_W, PANEL_H, COLUMNS = 420, 270, 3
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 44, 34


class Canvas:
    def __init__(self, width, height):
        self.width, self.height = width, height
        self.pixels = bytearray(WHITE * (width * height))

    def dot(self, x, y, color):
        if 0 <= x < self.width and 0 <= y < self.height:
            i = 3 * (y * self.width + x)
            self.pixels[i:i + 3] = bytes(color)

    def line(self, x0, y0, x1, y1, color, thick=1):
        """Bresenham's line, thick pixels high."""
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err = dx + dy
        while True:
            for t in range(thick):
                self.dot(x0, y0 + t, color)
            if x0 == x1 and y0 == y1:
                return
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def text(self, x, y, s, color=BLACK, scale=1):
        for ch in s.lower():
            rows = bytes.fromhex(FONT.get(ch, FONT[" "]))
            for r, bits in enumerate(rows):
                for c in range(5):
                    if bits & (0x10 >> c):
                        for i in range(scale):
                            for j in range(scale):
                                self.dot(x + c * scale + i, y + r * scale + j, color)
            x += 6 * scale

    def png(self):
        raw = b"".join(b"\0" + bytes(self.pixels[3 * y * self.width:3 * (y + 1) * self.width])
                       for y in range(self.height))

        def chunk(kind, data):
            return (struct.pack(">I", len(data)) + kind + data
                    + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff))
        return (b"\x89PNG\r\n\x1a\n"
                + chunk(b"IHDR", struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def short(v):
    """A tick's label: 3 significant digits, k, m, g."""
    for div, suffix in ((1e9, "g"), (1e6, "m"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{suffix}"
    return f"{v:.3g}"


def panel(canvas, x0, y0, title, series, xlabel):
    """One chart at (x0, y0): series is {name: [(x, y)]}."""
    canvas.text(x0 + LEFT, y0 + 8, title, scale=2)
    w, h = PANEL_W - LEFT - RIGHT, PANEL_H - TOP - BOTTOM
    ox, oy = x0 + LEFT, y0 + TOP + h
    points = [p for pts in series.values() for p in pts]
    xmax = max((x for x, _ in points), default=1) or 1
    ymax = 1.1 * max((y for _, y in points), default=1) or 1
    for frac in (0, 0.5, 1):
        y = oy - round(frac * h)
        canvas.line(ox, y, ox + w, y, GREY)
        label = short(frac * ymax)
        canvas.text(ox - 6 * len(label) - 4, y - 3, label)
    canvas.line(ox, oy - h, ox, oy, BLACK)
    canvas.line(ox, oy, ox + w, oy, BLACK)
    for frac in (0, 0.5, 1):
        label = short(frac * xmax)
        canvas.text(ox + round(frac * w) - 3 * len(label), oy + 5, label)
    canvas.text(ox + w // 2 - 3 * len(xlabel), oy + 16, xlabel)
    for k, (name, pts) in enumerate(series.items()):
        color = COLORS[k % len(COLORS)]
        xy = [(ox + round(x / xmax * w), oy - round(y / ymax * h)) for x, y in pts]
        for (xa, ya), (xb, yb) in zip(xy, xy[1:]):
            canvas.line(xa, ya, xb, yb, color, thick=2)
        for x, y in xy:
            canvas.line(x - 1, y - 1, x + 1, y - 1, color, thick=3)
        lx = ox + 90 * k            # the legend, a row under the title
        canvas.line(lx, y0 + 31, lx + 12, y0 + 31, color, thick=2)
        canvas.text(lx + 16, y0 + 28, name)


def write(path, panels, xlabel="x"):
    """panels: [(title, {series name: [(x, y)]})], COLUMNS to a row."""
    rows = (len(panels) + COLUMNS - 1) // COLUMNS
    canvas = Canvas(PANEL_W * min(len(panels), COLUMNS), PANEL_H * rows)
    for i, (title, series) in enumerate(panels):
        panel(canvas, PANEL_W * (i % COLUMNS), PANEL_H * (i // COLUMNS), title, series, xlabel)
    with open(path, "wb") as f:
        f.write(canvas.png())
