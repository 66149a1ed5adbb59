"""Scenes that look like the sorting line's camera photos (`../shared/real_pears/dev/`).

What the real photos show, and what this draws:
* a dark machine with a green belt running away from the camera, silver aluminium
  rails with bolts on both sides, orange fittings, a black plastic holder (cradle)
  under the pear; the background is out of focus (shallow depth of field);
* one round yellow-brown Asian pear, close to the camera: it fills 40-95 % of the
  frame and is often cut by the frame edge; lenticel dots, a stem cavity or calyx
  dimple, soft top light, a warm colour cast;
* defects as the line's classes show them: class 1 small dark spots and dark
  streaks, class 4 rough scab-like patches, class 6 dents, deformation and soft
  bruises (a lumpy outline and shading dips). The other defect classes of the
  8-output layout have no line photos and are not drawn.

`make_line_scene(seed, index)` depends only on `numpy.random.default_rng([seed, index])`.
`python line_gen.py preview --out sheet.png` draws a contact sheet beside real photos.
"""
from __future__ import annotations

import argparse
import glob
import io
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from pear_gen import _blend, _blur_mask, _fbm, _jitter_color, _noise_field

# the line's classes: 0 normal, 1 dark spots/streaks, 4 scab-like marks, 6 dents/deformation
LINE_CLASSES = (0, 1, 4, 6)
BASE_W, BASE_H = 640, 480


# --------------------------------------------------------------------------
# background: belt, rails, bolts, holder


def _poly(draw, pts, fill):
    draw.polygon([(float(x), float(y)) for x, y in pts], fill=fill)


def _rail(draw, rng, p0, p1, width, shade):
    """A silver aluminium profile from p0 to p1 (perspective: wider at p1)."""
    d = np.array(p1, float) - np.array(p0, float)
    n = np.array([-d[1], d[0]]) / (np.linalg.norm(d) + 1e-6)
    w0, w1 = width * 0.45, width
    c = tuple(int(v) for v in np.clip(np.array([200, 205, 210]) * shade + rng.normal(0, 8, 3), 0, 255))
    dark = tuple(int(v * 0.55) for v in c)
    _poly(draw, [p0 + n * w0, p1 + n * w1, p1 - n * w1, p0 - n * w0], c)
    # the profile's groove
    _poly(draw, [p0 + n * w0 * 0.15, p1 + n * w1 * 0.15, p1 - n * w1 * 0.1, p0 - n * w0 * 0.1], dark)
    # bolts along the outer edge
    for t in np.sort(rng.uniform(0.25, 1.0, int(rng.integers(1, 4)))):
        q = np.array(p0) + d * t + n * (w0 + (w1 - w0) * t) * 1.4
        r = width * (0.25 + 0.35 * t)
        draw.ellipse([q[0] - r, q[1] - r, q[0] + r, q[1] + r], fill=(170, 170, 165))
        draw.ellipse([q[0] - r * 0.5, q[1] - r * 0.5, q[0] + r * 0.5, q[1] + r * 0.5], fill=(90, 90, 90))


def render_line_background(rng, W, H):
    base = _jitter_color(rng, (0.13, 0.17, 0.16), 0.25)
    bg = np.ones((H, W, 3), np.float32) * base
    bg *= (1 + 0.15 * _fbm(rng, H, W, ((3, 0.6), (8, 0.3))))[..., None]
    img = Image.fromarray((np.clip(bg, 0, 1) * 255).astype(np.uint8), "RGB")
    dr = ImageDraw.Draw(img)
    # equipment at the far end (grey/white boxes), sometimes
    for _ in range(int(rng.integers(0, 4))):
        x, y = rng.uniform(0, W), rng.uniform(-0.1, 0.3) * H
        s = rng.uniform(0.1, 0.3) * W
        g = int(rng.integers(60, 235))
        dr.rectangle([x, y, x + s, y + s * rng.uniform(0.3, 0.8)], fill=(g, g, int(g * 0.97)))
    # belt: a green band running from the far end (top) towards the camera
    vx = W * rng.uniform(0.3, 0.7)                # vanishing x at the top
    bx = W * rng.uniform(0.25, 0.75)               # belt centre at the bottom
    wt, wb = W * rng.uniform(0.08, 0.2), W * rng.uniform(0.35, 0.7)
    belt = tuple(int(v) for v in np.clip(np.array([38, 105, 88]) * rng.uniform(0.7, 1.3) + rng.normal(0, 8, 3), 0, 255))
    _poly(dr, [(vx - wt, -H * 0.1), (vx + wt, -H * 0.1), (bx + wb, H * 1.1), (bx - wb, H * 1.1)], belt)
    # rails on both sides of the belt, and a cross rail now and then
    for side in (-1, 1):
        for k in range(int(rng.integers(1, 4))):
            off = 1.0 + 0.45 * k
            p0 = np.array([vx + side * wt * off, -H * 0.1])
            p1 = np.array([bx + side * wb * off * rng.uniform(0.9, 1.2), H * 1.1])
            _rail(dr, rng, p0, p1, W * rng.uniform(0.03, 0.07), rng.uniform(0.8, 1.15))
    if rng.random() < 0.5:
        y = H * rng.uniform(0.35, 0.8)
        _rail(dr, rng, np.array([-W * 0.1, y]), np.array([W * 1.1, y + rng.normal(0, H * 0.05)]),
              H * rng.uniform(0.03, 0.06), rng.uniform(0.8, 1.1))
    # orange fittings at the sides
    for _ in range(int(rng.integers(0, 4))):
        x = rng.choice([rng.uniform(0, 0.15), rng.uniform(0.85, 1.0)]) * W
        y = rng.uniform(0.2, 0.6) * H
        s = rng.uniform(0.02, 0.05) * W
        dr.rectangle([x, y, x + s * 2, y + s], fill=(int(rng.integers(170, 230)), int(rng.integers(90, 130)), 30))
    blur = rng.uniform(1.0, 5.0) * W / BASE_W
    return img.filter(ImageFilter.GaussianBlur(blur))


def draw_holder(img, rng, cx, bottom, r):
    """The black cradle under the pear: a block with vertical slots, in focus."""
    W, H = img.size
    dr = ImageDraw.Draw(img)
    g = int(rng.integers(22, 50))
    col = (g, g, g + 3)
    hw = r * rng.uniform(1.0, 1.5)
    top = bottom - r * rng.uniform(0.12, 0.3)
    yb = max(H + 5, top + r)
    dr.rectangle([cx - hw, top, cx + hw, yb], fill=col)
    # the cradle's teeth either side of the pear, a lighter edge on top
    for s in (-1, 1):
        x0 = cx + s * r * rng.uniform(0.55, 0.9)
        dr.rectangle([min(x0, x0 + s * r * 0.35), top - r * rng.uniform(0.1, 0.35), max(x0, x0 + s * r * 0.35), yb], fill=col)
    edge = tuple(min(255, v + 35) for v in col)
    dr.line([(cx - hw, top), (cx + hw, top)], fill=edge, width=max(1, int(r * 0.02)))
    for k in range(int(rng.integers(2, 6))):
        x = cx - hw + (k + 0.5) * 2 * hw / 5
        dr.rectangle([x, top + r * 0.05, x + r * 0.04, yb], fill=(max(0, g - 15),) * 3)


# --------------------------------------------------------------------------
# the pear


PALETTES = [(0.86, 0.64, 0.13), (0.82, 0.60, 0.16), (0.90, 0.70, 0.18), (0.80, 0.56, 0.14), (0.84, 0.68, 0.24)]


def _pear_shape(rng, H, W, cx, cy, r, lumpy):
    """Signed distance (pixels) to a round pear outline with radial wobble."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    sq = rng.uniform(0.88, 1.05)                   # a little wider than tall
    ang = np.arctan2((yy - cy) / sq, xx - cx)
    rad = np.hypot(xx - cx, (yy - cy) / sq)
    wob = np.zeros_like(ang)
    amps = (0.015, 0.01) if not lumpy else (rng.uniform(0.03, 0.07), rng.uniform(0.02, 0.05))
    for k, a in zip((2, 3), amps):
        wob += a * np.sin(k * ang + rng.uniform(0, 2 * np.pi))
    if lumpy:
        for k in (4, 5, 6):
            wob += rng.uniform(0.005, 0.025) * np.sin(k * ang + rng.uniform(0, 2 * np.pi))
    return rad - r * (1 + wob), xx, yy


def _dimple(alb, hgt, xx, yy, c, s, depth, dark):
    """A stem cavity / calyx: a dark centre in a shallow pit."""
    d2 = ((xx - c[0]) ** 2 + (yy - c[1]) ** 2) / (s * s)
    pit = np.exp(-d2 * 1.2)
    hgt -= depth * pit
    core = np.exp(-d2 * 9.0)
    return _blend(alb, dark, np.clip(core * 1.4, 0, 1)), hgt


def _spots(rng, alb, inside, visible, xx, yy, r, streaks):
    """Class 1: a few small dark brown spots, often with dark streaks (scratch marks)."""
    ys, xs = np.nonzero(visible)
    m = Image.new("L", (alb.shape[1], alb.shape[0]), 0)
    dr = ImageDraw.Draw(m)
    if visible is inside:
        # the shipped models' scenes: the cluster may fall under the holder or outside
        # the frame, and one spot alone can pass for the stem cavity
        cx0 = xs[rng.integers(len(xs))]
        cy0 = ys[rng.integers(len(xs))]
        n, spread, smin = int(rng.integers(1, 6)), 0.25, 0.025
    else:
        i0 = rng.integers(len(xs))
        cx0, cy0 = xs[i0], ys[i0]
        n, spread, smin = int(rng.integers(2, 7)), 0.15, 0.03
    for _ in range(n):
        x, y = cx0 + rng.normal(0, r * spread), cy0 + rng.normal(0, r * spread)
        s = r * rng.uniform(smin, 0.08)
        dr.ellipse([x - s, y - s * rng.uniform(0.5, 1.0), x + s, y + s], fill=int(rng.integers(180, 256)))
    if streaks:
        a = rng.uniform(0, np.pi)
        for _ in range(int(rng.integers(3, 10))):
            x, y = cx0 + rng.normal(0, r * 0.2), cy0 + rng.normal(0, r * 0.2)
            L = r * rng.uniform(0.08, 0.3)
            aa = a + rng.normal(0, 0.25)
            dr.line([(x, y), (x + L * math.cos(aa), y + L * math.sin(aa))],
                    fill=int(rng.integers(110, 220)), width=max(1, int(r * rng.uniform(0.008, 0.02))))
    alpha = _blur_mask(m, float(r) * 0.006) * inside
    col = _jitter_color(rng, (0.22, 0.13, 0.06), 0.2)
    return _blend(alb, col, alpha * rng.uniform(0.75, 0.95))


def _scab(rng, alb, inside, visible, xx, yy, r):
    """Class 4: rough patches: grey-brown crust with whitish flecks and dark pits."""
    ys, xs = np.nonzero(visible)
    H, W = inside.shape
    out = alb
    for _ in range(int(rng.integers(1, 4))):
        i = rng.integers(len(xs))
        c = (xs[i], ys[i])
        s = r * rng.uniform(0.07, 0.22)
        d2 = ((xx - c[0]) ** 2 + ((yy - c[1]) / rng.uniform(0.6, 1.4)) ** 2) / (s * s)
        rough = _noise_field(rng, H, W, max(8, int(W / max(4.0, s * 0.3))))
        patch = np.clip(1.3 - d2 + 0.6 * rough, 0, 1) * inside
        crust = _jitter_color(rng, (0.42, 0.34, 0.24), 0.2)
        out = _blend(out, crust, patch * rng.uniform(0.6, 0.9))
        fine = rng.random((H, W)).astype(np.float32)
        out = _blend(out, (0.85, 0.82, 0.72), (fine > 0.93) * patch * 0.7)
        out = _blend(out, (0.15, 0.1, 0.06), (fine < 0.06) * patch * 0.8)
    return out


def _dents(rng, alb, hgt, inside, visible, xx, yy, r):
    """Class 6: pits in the height field (dark crescents under top light) and soft bruises."""
    ys, xs = np.nonzero(visible)
    for _ in range(int(rng.integers(1, 4))):
        i = rng.integers(len(xs))
        s = r * rng.uniform(0.12, 0.3)
        d2 = ((xx - xs[i]) ** 2 + (yy - ys[i]) ** 2) / (s * s)
        hgt -= r * rng.uniform(0.06, 0.16) * np.exp(-d2)
    if rng.random() < 0.6:
        for _ in range(int(rng.integers(1, 3))):
            i = rng.integers(len(xs))
            s = r * rng.uniform(0.08, 0.22)
            d2 = ((xx - xs[i]) ** 2 + (yy - ys[i]) ** 2) / (s * s)
            a = np.clip(1.2 - d2 + 0.3 * _noise_field(rng, *inside.shape, 12), 0, 1) * inside
            alb = _blend(alb, _jitter_color(rng, (0.45, 0.3, 0.12), 0.15), a * rng.uniform(0.35, 0.7))
    return alb, hgt


def _defect_area(inside, xx, yy, cy, r):
    """Where a defect's centre may go so that the label stays true: on the pear, above
    the holder (which covers the pear's lower part from cy + 0.2 r down, teeth included)
    and away from the frame edge (the camera would not show it). Falls back to the
    whole pear when that leaves too little."""
    H, W = inside.shape
    m = inside.astype(bool) & (yy < cy + 0.15 * r)
    m &= (xx > 0.06 * W) & (xx < 0.94 * W) & (yy > 0.06 * H) & (yy < 0.94 * H)
    return m if m.sum() > 0.02 * inside.sum() else inside.astype(bool)


def render_line_pear(rng, W, H, cx, cy, r, cls, visible_defects=False):
    """RGBA float arrays (rgb HxWx3, alpha HxW) of the pear at (cx, cy), radius r.
    `visible_defects` keeps every defect where the camera sees it (`_defect_area`);
    off, the scenes the shipped classifier was trained and judged on."""
    d, xx, yy = _pear_shape(rng, H, W, cx, cy, r, lumpy=(cls == 6 and rng.random() < 0.8))
    inside = (d < -r * 0.08).astype(np.float32)
    base = _jitter_color(rng, PALETTES[int(rng.integers(len(PALETTES)))], 0.06)
    alb = np.ones((H, W, 3), np.float32) * base
    alb *= (1 + 0.06 * _fbm(rng, H, W, ((3, 0.6), (7, 0.3), (15, 0.15))))[..., None]
    # a greener or browner cast over part of the fruit
    alb = _blend(alb, _jitter_color(rng, (0.72, 0.66, 0.22), 0.1), np.clip(_noise_field(rng, H, W, 3), 0, 1) * 0.35)
    # lenticels: many tiny dots, lighter or brownish
    lm = Image.new("L", (W, H), 0)
    dl = ImageDraw.Draw(lm)
    ys, xs = np.nonzero(inside)
    n = int(rng.uniform(0.004, 0.012) * r * r)
    idx = rng.integers(0, len(xs), n)
    s = max(0.5, r * 0.006)
    for x, y in zip(xs[idx], ys[idx]):
        dl.ellipse([x - s, y - s, x + s, y + s], fill=int(rng.integers(90, 256)))
    lcol = (0.96, 0.85, 0.55) if rng.random() < 0.6 else tuple(base * 0.7)
    alb = _blend(alb, lcol, 0.5 * _blur_mask(lm, 0.5))
    # height field from the outline, then the stem cavity or the calyx
    Rm = r * 0.9
    e = np.clip(-d, 0, Rm)
    hgt = np.sqrt(e * (2 * Rm - e))
    if rng.random() < 0.5:
        ang = rng.uniform(-2.6, -0.5) if rng.random() < 0.7 else rng.uniform(0.6, 2.5)
        rr = r * rng.uniform(0.0, 0.75)
        c = (cx + rr * math.cos(ang), cy + rr * math.sin(ang))
        alb, hgt = _dimple(alb, hgt, xx, yy, c, r * rng.uniform(0.08, 0.16), r * rng.uniform(0.05, 0.15),
                           _jitter_color(rng, (0.35, 0.22, 0.08), 0.2))
    if cls in (1, 4, 6):
        visible = _defect_area(inside, xx, yy, cy, r) if visible_defects else inside
        if cls == 1:
            alb = _spots(rng, alb, inside, visible, xx, yy, r, streaks=rng.random() < 0.5)
        elif cls == 4:
            alb = _scab(rng, alb, inside, visible, xx, yy, r)
        else:
            alb, hgt = _dents(rng, alb, hgt, inside, visible, xx, yy, r)
    # shading: soft light from above and in front, a broad highlight
    gy, gx = np.gradient(hgt)
    nrm = np.stack([-gx, -gy, np.ones_like(gx)], -1)
    nrm /= np.linalg.norm(nrm, axis=-1, keepdims=True)
    L = np.array([rng.normal(0, 0.3), rng.uniform(-0.9, -0.2), 1.0], np.float32)
    L /= np.linalg.norm(L)
    lam = np.clip(nrm @ L, 0, 1)
    amb = rng.uniform(0.45, 0.65)
    shade = (amb + (1 - amb) * lam) * rng.uniform(1.0, 1.25)
    Hv = L + np.array([0, 0, 1], np.float32)
    Hv /= np.linalg.norm(Hv)
    spec = np.clip(nrm @ Hv, 0, 1) ** rng.uniform(6, 20) * rng.uniform(0.05, 0.25)
    rgb = np.clip(alb * shade[..., None] + spec[..., None], 0, 1)
    alpha = np.clip(0.5 - d, 0, 1)
    return rgb, alpha


# --------------------------------------------------------------------------
# scenes


def make_line_scene(seed, index, cls=None, empty=False, size=(BASE_W, BASE_H), jpeg=True, visible_defects=False):
    """Scene `index` of stream `seed`: (PIL RGB image, box [x1,y1,x2,y2] or None, cls).

    cls defaults to LINE_CLASSES[index % 4]; `empty` draws the belt without a pear (cls -1).
    """
    rng = np.random.default_rng([seed, index])
    if cls is None:
        cls = LINE_CLASSES[index % len(LINE_CLASSES)]
    W, H = size
    img = render_line_background(rng, W, H)
    box = None
    if empty:
        cls = -1
        if rng.random() < 0.6:
            draw_holder(img, rng, W * rng.uniform(0.3, 0.7), H * rng.uniform(0.7, 1.0), W * rng.uniform(0.15, 0.3))
    else:
        # pear box 40-95 % of the frame area; centre may push it past the frame edge
        frac = rng.uniform(0.4, 0.95)
        r = math.sqrt(frac * W * H / 4.0) * rng.uniform(0.95, 1.05)
        r = min(r, H * 0.62)
        cx = W / 2 + rng.normal(0, 0.12) * W
        cy = H / 2 + rng.normal(0.05, 0.12) * H
        rgb, alpha = render_line_pear(rng, W, H, cx, cy, r, cls, visible_defects)
        # the pear's cast shadow on the holder/belt below
        sh = np.roll(alpha, int(r * 0.08), axis=0)
        arr = np.asarray(img, np.float32) / 255.0
        arr *= (1 - 0.45 * _blur_mask(Image.fromarray((sh * 255).astype(np.uint8)), r * 0.1))[..., None]
        arr = arr * (1 - alpha[..., None]) + rgb * alpha[..., None]
        img = Image.fromarray((np.clip(arr, 0, 1) * 255).astype(np.uint8), "RGB")
        occl = Image.new("L", (W, H), 0)
        if rng.random() < 0.85:
            before = np.asarray(img).copy()
            draw_holder(img, rng, cx, cy + r * rng.uniform(0.85, 1.0), r)
            changed = np.any(np.asarray(img) != before, axis=-1)
            occl = Image.fromarray((changed * 255).astype(np.uint8))
        vis = (alpha > 0.5) & ~(np.asarray(occl) > 0)
        ys, xs = np.nonzero(vis)
        if len(xs) > 0:
            box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
    # camera: warm cast, exposure, vignette, noise, slight blur, JPEG
    arr = np.asarray(img, np.float32) / 255.0
    cast = np.array([1.0, 1.0, 1.0]) + rng.normal(0, 0.04, 3) + np.array([0.03, 0.02, -0.05])
    arr = arr * cast * rng.uniform(0.75, 1.25)
    yy, xx = np.mgrid[0:H, 0:W]
    vig = 1 - rng.uniform(0.0, 0.25) * (((xx - W / 2) / W) ** 2 + ((yy - H / 2) / H) ** 2) * 2
    arr = arr * vig[..., None] + rng.normal(0, rng.uniform(0.003, 0.015), arr.shape)
    img = Image.fromarray((np.clip(arr, 0, 1) * 255).astype(np.uint8), "RGB")
    if rng.random() < 0.4:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    if jpeg:
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=int(rng.integers(70, 96)))
        img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return img, box, cls


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["preview"])
    ap.add_argument("--out", default="line_sheet.png")
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--real", default="../../../shared/real_pears/dev", help="folder of real line photos")
    a = ap.parse_args()

    tw, th = 320, 240
    reals = [Image.open(p).convert("RGB").resize((tw, th)) for p in sorted(glob.glob(f"{a.real}/*.jpg"))][: a.n // 2]
    fakes = []
    for i in range(a.n):
        img, box, cls = make_line_scene(a.seed, i, empty=(i == a.n - 1))
        t = img.resize((tw, th))
        if box:
            s = tw / img.size[0]
            ImageDraw.Draw(t).rectangle([v * s for v in box], outline=(255, 0, 0))
        ImageDraw.Draw(t).text((4, 4), f"gen cls {cls}", fill=(255, 255, 255))
        fakes.append(t)
    tiles = reals + fakes
    cols = 6
    rows = (len(tiles) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * tw, rows * th), "white")
    for i, t in enumerate(tiles):
        sheet.paste(t, ((i % cols) * tw, (i // cols) * th))
    sheet.save(a.out)
    print(a.out)


if __name__ == "__main__":
    main()
