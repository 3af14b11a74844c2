"""Draw the MLX Flux app icon and write every size the bundle needs.

This script is the icon's source art: the picture is drawn here in code (a macOS-style
squircle with a dusk gradient, a sun and three flowing ribbons: an image emerging from a
flow), so it can be changed by editing numbers and rerun without any design tool.

    python resources/make_icons.py          # rewrites the files below, beside this script

Writes icon.png (1024 px master), icon_<N>.png for N in 16..512, and icon.icns (macOS).
Only Pillow is needed.
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent
MASTER = 1024
SS = 4                        # supersampling factor for smooth edges
PNG_SIZES = (16, 32, 64, 128, 256, 512)
ICNS_SIZES = (16, 32, 64, 128, 256, 512, 1024)

# Apple's icon grid: an 824 px rounded shape centred on a 1024 px canvas, room for a shadow.
BODY = 824
# Dusk: deep indigo at the top to violet and a warm magenta glow at the bottom right.
TOP, MIDDLE, BOTTOM = (28, 26, 78), (88, 52, 196), (236, 92, 132)
SUN_INNER, SUN_OUTER = (255, 226, 150), (255, 150, 92)


def lerp(a, b, t):
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b))


def superellipse(cx, cy, r, n=5.0, steps=720):
    """Points of |x|^n + |y|^n = r^n: the continuous-curvature 'squircle' of macOS icons."""
    pts = []
    for i in range(steps):
        t = 2 * math.pi * i / steps
        c, s = math.cos(t), math.sin(t)
        pts.append((cx + r * math.copysign(abs(c) ** (2 / n), c), cy + r * math.copysign(abs(s) ** (2 / n), s)))
    return pts


def gradient(size, stops, angle_deg):
    """A linear gradient along angle_deg through colour stops [(pos, rgb), ...]."""
    w, h = size
    # Render a 1-D ramp and rotate/stretch it: far faster than per-pixel Python.
    ramp_len = 1024
    ramp = Image.new("RGB", (ramp_len, 1))
    px = ramp.load()
    for i in range(ramp_len):
        t = i / (ramp_len - 1)
        for (p0, c0), (p1, c1) in zip(stops, stops[1:]):
            if p0 <= t <= p1:
                px[i, 0] = lerp(c0, c1, (t - p0) / (p1 - p0) if p1 > p0 else 0)
                break
    diag = int(math.hypot(w, h)) + 2
    big = ramp.resize((diag, diag), Image.BILINEAR).rotate(-angle_deg, resample=Image.BICUBIC, expand=False)
    left, top = (diag - w) // 2, (diag - h) // 2
    return big.crop((left, top, left + w, top + h))


def radial(size, center, radius, inner, outer):
    """RGBA disc fading from `inner` at the centre to `outer` at `radius`, transparent outside."""
    w, h = size
    img = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    cx, cy = center
    for i in range(256, 0, -1):
        r = radius * i / 256
        c = lerp(inner, outer, (i / 256) ** 1.6)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=c + (255,))
    return img


def ribbon(size, y0, amp, wavelength, phase, width, x0, x1, tilt=0.0):
    """Mask of a flowing ribbon: a sine centre line with a thickness that tapers at both ends."""
    pts_top, pts_bot = [], []
    steps = 400
    for i in range(steps + 1):
        u = i / steps
        x = x0 + (x1 - x0) * u
        y = y0 + amp * math.sin(2 * math.pi * x / wavelength + phase) + tilt * (x - x0)
        half = width / 2 * math.sin(math.pi * u) ** 0.7
        # offset along the normal so the thickness looks even on the slopes
        dydx = amp * 2 * math.pi / wavelength * math.cos(2 * math.pi * x / wavelength + phase) + tilt
        norm = math.hypot(1, dydx)
        nx, ny = -dydx / norm, 1 / norm
        pts_top.append((x + nx * half, y + ny * half))
        pts_bot.append((x - nx * half, y - ny * half))
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).polygon(pts_top + pts_bot[::-1], fill=255)
    return mask


def sparkle(draw, cx, cy, r, fill):
    """A four-pointed star with concave sides."""
    pts = []
    for i in range(16):
        a = math.pi / 2 * (i / 4)
        rr = r if i % 4 == 0 else r * (0.16 if i % 4 == 2 else 0.3)
        pts.append((cx + rr * math.cos(a), cy - rr * math.sin(a)))
    draw.polygon(pts, fill=fill)


def draw_master() -> Image.Image:
    S = MASTER * SS
    size = (S, S)
    c = S / 2
    body_r = BODY * SS / 2
    shape = Image.new("L", size, 0)
    ImageDraw.Draw(shape).polygon(superellipse(c, c, body_r), fill=255)

    # background gradient, a soft top sheen and a warm glow behind the sun
    art = gradient(size, [(0.0, TOP), (0.55, MIDDLE), (1.0, BOTTOM)], 62).convert("RGBA")
    glow = radial(size, (c + 150 * SS, c - 120 * SS), 420 * SS, (255, 170, 140), MIDDLE)
    glow.putalpha(radial(size, (c + 150 * SS, c - 120 * SS), 420 * SS, (110,) * 3, (0,) * 3).convert("L"))
    art = Image.alpha_composite(art, glow)

    # the sun, half set behind the flow
    sun_c, sun_r = (c + 150 * SS, c - 90 * SS), 150 * SS
    sun = radial(size, sun_c, sun_r, SUN_INNER, SUN_OUTER)
    art = Image.alpha_composite(art, sun)

    # three ribbons of flow, back to front, each brighter and nearer
    x0, x1 = c - body_r - 40 * SS, c + body_r + 40 * SS
    layers = [
        # y0, amp, wavelength, phase, width, colour, alpha
        (c + 40 * SS, 60 * SS, 760 * SS, 0.6, 120 * SS, (170, 146, 250), 225),
        (c + 150 * SS, 70 * SS, 820 * SS, 1.5, 150 * SS, (214, 200, 255), 240),
        (c + 265 * SS, 60 * SS, 900 * SS, 2.4, 170 * SS, (255, 255, 255), 250),
    ]
    for y0, amp, wl, ph, width, colour, alpha in layers:
        mask = ribbon(size, y0, amp, wl, ph, width, x0, x1, tilt=-0.12)
        # shaded along the flow: deeper where it comes from (left), lit where it goes (right)
        shade = gradient(size, [(0.0, lerp(colour, MIDDLE, 0.45)), (0.6, colour), (1.0, colour)], 20).convert("RGBA")
        shade.putalpha(mask.point(lambda v, a=alpha: v * a // 255))
        # soft shadow under the ribbon
        shadow = Image.new("RGBA", size, (20, 10, 60, 0))
        shadow.putalpha(mask.filter(ImageFilter.GaussianBlur(14 * SS)).point(lambda v: v * 70 // 255))
        shadow = ImageChops.offset(shadow, 0, 10 * SS)
        art = Image.alpha_composite(art, shadow)
        art = Image.alpha_composite(art, shade)

    # a sparkle: the 'generation' moment
    d = ImageDraw.Draw(art)
    sparkle(d, c - 190 * SS, c - 210 * SS, 78 * SS, (255, 255, 255, 240))
    sparkle(d, c - 80 * SS, c - 300 * SS, 34 * SS, (255, 255, 255, 190))

    # glassy sheen over the top half
    sheen = Image.new("RGBA", size, (255, 255, 255, 0))
    sheen_alpha = gradient(size, [(0.0, (48,) * 3), (0.5, (0,) * 3), (1.0, (0,) * 3)], 90).convert("L")
    sheen.putalpha(sheen_alpha)
    art = Image.alpha_composite(art, sheen)

    # clip to the squircle, add a thin light rim
    body = Image.new("RGBA", size, (0, 0, 0, 0))
    body.paste(art, (0, 0), shape)
    rim = ImageChops.subtract(shape, shape.filter(ImageFilter.MinFilter(2 * SS + 1)))
    rim_layer = Image.new("RGBA", size, (255, 255, 255, 0))
    rim_layer.putalpha(rim.point(lambda v: v * 60 // 255))
    body = Image.alpha_composite(body, rim_layer)

    # drop shadow on the transparent canvas, as macOS icons have
    shadow = Image.new("RGBA", size, (0, 0, 0, 0))
    shadow.putalpha(shape.point(lambda v: v * 90 // 255).filter(ImageFilter.GaussianBlur(12 * SS)))
    shadow = ImageChops.offset(shadow, 0, 12 * SS)
    out = Image.alpha_composite(shadow, body)
    return out.resize((MASTER, MASTER), Image.LANCZOS)


def main() -> None:
    master = draw_master()
    master.save(HERE / "icon.png", optimize=True)
    for n in PNG_SIZES:
        master.resize((n, n), Image.LANCZOS).save(HERE / f"icon_{n}.png", optimize=True)
    # Pillow's ICNS writer takes the exact images for each size from append_images.
    images = [master.resize((n, n), Image.LANCZOS) for n in ICNS_SIZES]
    master.save(HERE / "icon.icns", format="ICNS", append_images=images)
    print("wrote", ", ".join(sorted(p.name for p in HERE.glob("icon*"))))


if __name__ == "__main__":
    main()
