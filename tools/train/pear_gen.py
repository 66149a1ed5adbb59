"""Deterministic, seeded generator of pear scenes (PIL + numpy only).

A scene is an RGB image with at most one pear on a cluttered background, its
box (x0, y0, x1, y1) in pixels (stem included) and its class:

    0 normal, 1 black_spot, 2 bruise, 3 cut, 4 rot, 5 insect_hole, 6 scab, 7 mold

Scene `i` of a stream with base seed `s` is drawn from
numpy.random.default_rng([s, i]) only, so a scene never depends on how the
work was split between processes.

    python pear_gen.py preview --out /tmp/preview.png     # a contact sheet
"""
from __future__ import annotations

import argparse
import io
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from common import CLASSES

# --------------------------------------------------------------------------
# small helpers


def _noise_field(rng, h, w, cells):
    """Smooth value noise in [-1, 1], shape (h, w)."""
    g = rng.uniform(-1, 1, (cells + 1, cells + 1)).astype(np.float32)
    im = Image.fromarray(g, mode="F").resize((w, h), Image.BICUBIC)
    return np.clip(np.asarray(im), -1.5, 1.5)


def _fbm(rng, h, w, octaves=((4, 0.6), (9, 0.3), (20, 0.15))):
    out = np.zeros((h, w), np.float32)
    for cells, amp in octaves:
        out += amp * _noise_field(rng, h, w, cells)
    return out


def _blur_mask(mask_img: Image.Image, radius: float) -> np.ndarray:
    if radius > 0.3:
        mask_img = mask_img.filter(ImageFilter.GaussianBlur(radius))
    return np.asarray(mask_img, np.float32) / 255.0


def _blend(rgb, color, alpha):
    """rgb HxWx3 float, color (3,) or HxWx3, alpha HxW in 0..1."""
    a = alpha[..., None]
    return rgb * (1 - a) + np.asarray(color, np.float32) * a


def _jitter_color(rng, base, amount=0.06):
    c = np.array(base, np.float32) * rng.uniform(1 - amount, 1 + amount, 3)
    return np.clip(c, 0, 1)


# --------------------------------------------------------------------------
# pear body

PEAR_PALETTES = {
    "green": (0.52, 0.70, 0.24),
    "light_green": (0.66, 0.78, 0.34),
    "yellow": (0.88, 0.78, 0.30),
    "golden": (0.85, 0.66, 0.25),
    "russet": (0.64, 0.44, 0.22),
    "red": (0.62, 0.20, 0.14),
}
PALETTE_WEIGHTS = {"green": 0.26, "light_green": 0.16, "yellow": 0.22, "golden": 0.12, "russet": 0.16, "red": 0.08}


def _pear_geometry(rng, r1):
    """Upright pear: body circle radius r1, head circle r2 above, smooth neck."""
    r2 = r1 * rng.uniform(0.48, 0.72)
    dist = r1 * rng.uniform(0.75, 1.2)
    k = r1 * rng.uniform(0.35, 0.7)           # smooth-union width (the neck)
    squash = rng.uniform(0.88, 1.12)           # body vertical squash
    off = r1 * rng.uniform(-0.12, 0.12)        # head sideways offset
    stem_len = r1 * rng.uniform(0.25, 0.6) if rng.random() > 0.08 else 0.0
    stem_w = max(1.5, r1 * rng.uniform(0.05, 0.09))
    pad = int(r1 * 0.15) + 4
    W = int(2 * r1 * 1.15 + 2 * pad + abs(off) * 2)
    top = r2 + stem_len + pad
    H = int(r1 * squash + r1 * 0.1 + dist + top + pad)
    c1 = np.array([W / 2, H - pad - r1 * squash * 1.0 - r1 * 0.05])
    c2 = c1 + np.array([off, -dist])
    return dict(r1=r1, r2=r2, dist=dist, k=k, squash=squash, c1=c1, c2=c2, W=W, H=H,
                stem_len=stem_len, stem_w=stem_w)


def _pear_sdf(g):
    H, W = g["H"], g["W"]
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    xx += 0.5
    yy += 0.5
    d1 = np.hypot(xx - g["c1"][0], (yy - g["c1"][1]) / g["squash"]) - g["r1"]
    d2 = np.hypot(xx - g["c2"][0], yy - g["c2"][1]) - g["r2"]
    k = g["k"]
    h = np.clip(k - np.abs(d1 - d2), 0, None) / k
    d = np.minimum(d1, d2) - h * h * k * 0.25
    return d, xx, yy


# --------------------------------------------------------------------------
# defects: each paints onto the albedo (HxWx3 float) inside the body.


def _inside_points(rng, d, margin, n, near=None, spread=None):
    """Random points inside the body with distance >= margin from the edge."""
    ys, xs = np.nonzero(d < -margin)
    if len(xs) == 0:
        ys, xs = np.nonzero(d < 0)
    pts = []
    for _ in range(n):
        if near is not None:
            for _ in range(20):
                p = np.array(near) + rng.normal(0, spread, 2)
                xi, yi = int(p[0]), int(p[1])
                if 0 <= yi < d.shape[0] and 0 <= xi < d.shape[1] and d[yi, xi] < -margin:
                    break
            else:
                i = rng.integers(len(xs))
                p = np.array([xs[i], ys[i]], np.float64)
        else:
            i = rng.integers(len(xs))
            p = np.array([xs[i], ys[i]], np.float64) + rng.uniform(0, 1, 2)
        pts.append(p)
    return pts


def _ellipse(draw, c, rx, ry, angle_deg, fill, steps=28, wobble=None, rng=None):
    t = np.linspace(0, 2 * np.pi, steps, endpoint=False)
    rr = np.ones_like(t)
    if wobble and rng is not None:
        ph = rng.uniform(0, 2 * np.pi, 3)
        rr = 1 + wobble * (0.5 * np.sin(2 * t + ph[0]) + 0.3 * np.sin(3 * t + ph[1]) + 0.2 * np.sin(5 * t + ph[2]))
    a = math.radians(angle_deg)
    x = rx * rr * np.cos(t)
    y = ry * rr * np.sin(t)
    px = c[0] + x * math.cos(a) - y * math.sin(a)
    py = c[1] + x * math.sin(a) + y * math.cos(a)
    draw.polygon(list(zip(px.tolist(), py.tolist())), fill=fill)


def defect_black_spot(rng, alb, d, g):
    r1 = g["r1"]
    H, W = d.shape
    m = Image.new("L", (W, H), 0)
    dr = ImageDraw.Draw(m)
    halo = Image.new("L", (W, H), 0)
    dh = ImageDraw.Draw(halo)
    n_clusters = rng.integers(1, 3)
    for center in _inside_points(rng, d, r1 * 0.25, n_clusters):
        for p in _inside_points(rng, d, r1 * 0.08, int(rng.integers(3, 9)), near=center, spread=r1 * 0.22):
            r = r1 * rng.uniform(0.045, 0.10)
            _ellipse(dh, p, r * 1.5, r * 1.5 * rng.uniform(0.7, 1.0), rng.uniform(0, 180), 140)
            _ellipse(dr, p, r, r * rng.uniform(0.7, 1.0), rng.uniform(0, 180), 255, wobble=0.25, rng=rng)
    alb[:] = _blend(alb, alb * 0.55, _blur_mask(halo, r1 * 0.04))
    col = _jitter_color(rng, (0.07, 0.06, 0.05), 0.3)
    alb[:] = _blend(alb, col, 0.95 * _blur_mask(m, max(0.6, r1 * 0.012)))


def defect_bruise(rng, alb, d, g):
    r1 = g["r1"]
    H, W = d.shape
    for c in _inside_points(rng, d, r1 * 0.35, int(rng.integers(1, 3))):
        m = Image.new("L", (W, H), 0)
        r = r1 * rng.uniform(0.28, 0.48)
        _ellipse(ImageDraw.Draw(m), c, r, r * rng.uniform(0.6, 1.0), rng.uniform(0, 180), 255, wobble=0.2, rng=rng)
        a = _blur_mask(m, r * 0.3) * rng.uniform(0.85, 1.0)
        tone = alb * np.array([0.50, 0.40, 0.36], np.float32) * rng.uniform(0.6, 0.8) + np.array([0.05, 0.02, 0.02], np.float32)
        alb[:] = _blend(alb, tone, a)


def defect_cut(rng, alb, d, g):
    r1 = g["r1"]
    H, W = d.shape
    n = 1 if rng.random() < 0.8 else 2
    for start in _inside_points(rng, d, r1 * 0.3, n):
        length = r1 * rng.uniform(0.6, 1.3)
        ang = rng.uniform(0, 2 * np.pi)
        segs = int(rng.integers(3, 6))
        pts = [start]
        for _ in range(segs):
            ang += rng.normal(0, 0.25)
            nxt = pts[-1] + np.array([math.cos(ang), math.sin(ang)]) * length / segs
            xi, yi = int(np.clip(nxt[0], 0, W - 1)), int(np.clip(nxt[1], 0, H - 1))
            if d[yi, xi] > -r1 * 0.08:
                break
            pts.append(nxt)
        if len(pts) < 3:  # too close to the edge: go the other way
            ang += np.pi
            pts = [start]
            for _ in range(segs):
                nxt = pts[-1] + np.array([math.cos(ang), math.sin(ang)]) * length / segs
                xi, yi = int(np.clip(nxt[0], 0, W - 1)), int(np.clip(nxt[1], 0, H - 1))
                if d[yi, xi] > -r1 * 0.05:
                    break
                pts.append(nxt)
        if len(pts) < 2:
            pts.append(start + np.array([r1 * 0.3, 0]))
        line = [tuple(p) for p in pts]
        width = max(2.0, r1 * rng.uniform(0.07, 0.12))
        edge = Image.new("L", (W, H), 0)
        ImageDraw.Draw(edge).line(line, fill=255, width=int(round(width + 2 * max(1.5, r1 * 0.04))), joint="curve")
        core = Image.new("L", (W, H), 0)
        ImageDraw.Draw(core).line(line, fill=255, width=int(round(width)), joint="curve")
        dark = _jitter_color(rng, (0.30, 0.18, 0.08), 0.2)
        flesh = _jitter_color(rng, (0.95, 0.90, 0.72), 0.05)
        if rng.random() < 0.4:  # oxidised flesh
            flesh = flesh * np.array([0.92, 0.82, 0.65], np.float32)
        alb[:] = _blend(alb, dark, 0.9 * _blur_mask(edge, 0.6))
        alb[:] = _blend(alb, flesh, _blur_mask(core, 0.5))


def defect_rot(rng, alb, d, g):
    r1 = g["r1"]
    H, W = d.shape
    c = _inside_points(rng, d, r1 * 0.2, 1)[0]
    r = r1 * rng.uniform(0.32, 0.62)
    m = Image.new("L", (W, H), 0)
    _ellipse(ImageDraw.Draw(m), c, r, r * rng.uniform(0.75, 1.0), rng.uniform(0, 180), 255, wobble=0.3, rng=rng)
    a = _blur_mask(m, r * 0.08)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    rad = np.hypot(xx - c[0], yy - c[1]) / r
    period = rng.uniform(0.12, 0.2)
    rings = 0.5 + 0.5 * np.sin(rad / period * 2 * np.pi)
    mott = _fbm(rng, H, W, ((6, 0.5), (16, 0.3)))
    base = _jitter_color(rng, (0.36, 0.21, 0.08), 0.12)
    col = base[None, None, :] * (0.75 + 0.3 * rings[..., None] + 0.15 * mott[..., None])
    col = col * np.clip(0.7 + 0.5 * rad, 0.6, 1.1)[..., None]      # darker centre
    alb[:] = _blend(alb, np.clip(col, 0, 1), 0.95 * a)


def defect_insect_hole(rng, alb, d, g):
    r1 = g["r1"]
    H, W = d.shape
    n = int(rng.integers(1, 3))
    for c in _inside_points(rng, d, r1 * 0.2, n):
        r = r1 * rng.uniform(0.05, 0.085)
        ring = Image.new("L", (W, H), 0)
        dr = ImageDraw.Draw(ring)
        _ellipse(dr, c, r * 2.6, r * 2.6 * rng.uniform(0.8, 1.0), rng.uniform(0, 180), 255, wobble=0.15, rng=rng)
        brown = _jitter_color(rng, (0.50, 0.32, 0.14), 0.12)
        alb[:] = _blend(alb, brown, 0.8 * _blur_mask(ring, r * 0.5))
        # frass grains around the hole
        grains = Image.new("L", (W, H), 0)
        dg = ImageDraw.Draw(grains)
        for _ in range(int(rng.integers(3, 8))):
            ang, dist = rng.uniform(0, 2 * np.pi), r * rng.uniform(1.6, 3.0)
            p = (c[0] + dist * math.cos(ang), c[1] + dist * math.sin(ang))
            s = max(0.8, r * rng.uniform(0.15, 0.3))
            dg.ellipse([p[0] - s, p[1] - s, p[0] + s, p[1] + s], fill=255)
        alb[:] = _blend(alb, brown * 0.6, 0.9 * _blur_mask(grains, 0.4))
        hole = Image.new("L", (W, H), 0)
        ImageDraw.Draw(hole).ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=255)
        alb[:] = _blend(alb, (0.03, 0.02, 0.01), _blur_mask(hole, 0.5))


def defect_scab(rng, alb, d, g):
    r1 = g["r1"]
    H, W = d.shape
    n = int(rng.integers(1, 4))
    under = Image.new("L", (W, H), 0)
    du = ImageDraw.Draw(under)
    speck = Image.new("L", (W, H), 0)
    ds = ImageDraw.Draw(speck)
    for c in _inside_points(rng, d, r1 * 0.2, n):
        R = r1 * rng.uniform(0.16, 0.32)
        _ellipse(du, c, R, R * rng.uniform(0.6, 1.0), rng.uniform(0, 180), 255, wobble=0.45, rng=rng)
        for _ in range(int(rng.integers(25, 60))):
            ang, rr = rng.uniform(0, 2 * np.pi), R * math.sqrt(rng.uniform(0, 1)) * 1.1
            p = (c[0] + rr * math.cos(ang), c[1] + rr * math.sin(ang))
            s = max(0.8, r1 * rng.uniform(0.015, 0.045))
            ds.ellipse([p[0] - s, p[1] - s, p[0] + s, p[1] + s], fill=int(rng.integers(150, 256)))
    olive = _jitter_color(rng, (0.36, 0.35, 0.22), 0.12)
    tex = 1 + 0.25 * _noise_field(rng, H, W, 30)[..., None]
    a_under = _blur_mask(under, r1 * 0.03) * 0.6
    alb[:] = _blend(alb, np.clip(olive[None, None] * tex * 1.2, 0, 1), a_under)
    alb[:] = _blend(alb, olive * 0.55, _blur_mask(speck, 0.5))


def defect_mold(rng, alb, d, g):
    r1 = g["r1"]
    H, W = d.shape
    n = int(rng.integers(1, 3))
    white = _jitter_color(rng, [(0.90, 0.91, 0.88), (0.70, 0.80, 0.72), (0.78, 0.82, 0.86)][int(rng.integers(3))], 0.05)
    for c in _inside_points(rng, d, r1 * 0.25, n):
        R = r1 * rng.uniform(0.22, 0.42)
        m = Image.new("L", (W, H), 0)
        _ellipse(ImageDraw.Draw(m), c, R, R * rng.uniform(0.7, 1.0), rng.uniform(0, 180), 255, wobble=0.35, rng=rng)
        soft = _blur_mask(m, R * 0.25)
        # brown soft rot under the mould
        alb[:] = _blend(alb, alb * np.array([0.6, 0.45, 0.3], np.float32), 0.7 * soft)
        fuzz = _fbm(rng, H, W, ((12, 0.5), (30, 0.35), (60, 0.25)))
        a = np.clip(soft * 1.5 - 0.25 + 0.6 * fuzz, 0, 1) * _blur_mask(m, R * 0.1)
        alb[:] = _blend(alb, white, np.clip(a * 1.1, 0, 0.97))


DEFECTS = [None, defect_black_spot, defect_bruise, defect_cut, defect_rot,
           defect_insect_hole, defect_scab, defect_mold]


# --------------------------------------------------------------------------


def render_pear(rng, r1, cls, light_dir):
    """Returns an RGBA uint8 PIL image of an upright pear (alpha = pear)."""
    g = _pear_geometry(rng, r1)
    d, xx, yy = _pear_sdf(g)
    H, W = d.shape
    names = list(PALETTE_WEIGHTS)
    pal = names[rng.choice(len(names), p=np.array(list(PALETTE_WEIGHTS.values())))]
    base = _jitter_color(rng, PEAR_PALETTES[pal], 0.08)
    alb = np.empty((H, W, 3), np.float32)
    alb[:] = base
    # low-frequency colour variation and blush
    alb *= (1 + 0.07 * _fbm(rng, H, W))[..., None]
    if pal in ("green", "light_green", "yellow", "golden") and rng.random() < 0.35:
        blush = _noise_field(rng, H, W, 3)
        a = np.clip(blush * rng.uniform(0.3, 0.7), 0, 0.35)
        alb = _blend(alb, (0.85, 0.30, 0.25), a)
    if pal == "russet":
        alb *= (1 + 0.12 * _noise_field(rng, H, W, 40))[..., None]
    # lenticels: tiny dots, lighter on russet/red, darker on green/yellow
    n_len = int(rng.uniform(0.006, 0.02) * (r1 * r1))
    if n_len > 0:
        lm = Image.new("L", (W, H), 0)
        dl = ImageDraw.Draw(lm)
        ys, xs = np.nonzero(d < -2)
        idx = rng.integers(0, len(xs), n_len)
        s = max(0.5, r1 * 0.012)
        for x, y in zip(xs[idx], ys[idx]):
            dl.ellipse([x - s, y - s, x + s, y + s], fill=int(rng.integers(120, 256)))
        lcol = (0.85, 0.75, 0.5) if pal in ("russet", "red") else tuple(base * 0.7)
        alb = _blend(alb, lcol, 0.6 * _blur_mask(lm, 0.4))
    # calyx at the bottom (small dark star-ish dot), seen sometimes
    if rng.random() < 0.5:
        cm = Image.new("L", (W, H), 0)
        cx, cy = g["c1"][0] + rng.normal(0, r1 * 0.05), g["c1"][1] + r1 * g["squash"] * 0.88
        s = r1 * 0.06
        ImageDraw.Draw(cm).ellipse([cx - s, cy - s * 0.6, cx + s, cy + s * 0.6], fill=255)
        alb = _blend(alb, base * 0.45, 0.7 * _blur_mask(cm, 1.0))

    if DEFECTS[cls] is not None:
        DEFECTS[cls](rng, alb, d, g)
    alb = np.clip(alb, 0, 1)

    # shading: a height field from the distance to the outline
    Rm = r1 * 0.75
    e = np.clip(-d, 0, Rm)
    hgt = np.sqrt(e * (2 * Rm - e))
    gy, gx = np.gradient(hgt)
    n = np.stack([-gx, -gy, np.ones_like(gx)], -1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    L = np.asarray(light_dir, np.float32)
    L = L / np.linalg.norm(L)
    lam = np.clip(n @ L, 0, 1)
    amb = rng.uniform(0.35, 0.5)
    shade = amb + (1 - amb) * lam
    Hv = L + np.array([0, 0, 1], np.float32)
    Hv /= np.linalg.norm(Hv)
    spec = np.clip(n @ Hv, 0, 1) ** rng.uniform(18, 50) * rng.uniform(0.1, 0.35)
    rgb = alb * shade[..., None] + spec[..., None]
    rgb = np.clip(rgb * (1 + rng.normal(0, 0.015, rgb.shape).astype(np.float32)), 0, 1)
    alpha = np.clip(0.5 - d, 0, 1)

    img = Image.fromarray(np.concatenate([(rgb * 255).astype(np.uint8), (alpha[..., None] * 255).astype(np.uint8)], -1), "RGBA")
    # stem
    if g["stem_len"] > 0:
        top = g["c2"] - np.array([0, g["r2"] * 0.92])
        bend = rng.uniform(-0.5, 0.5)
        pts = []
        for t in np.linspace(0, 1, 6):
            pts.append((top[0] + bend * g["stem_len"] * t * t, top[1] - g["stem_len"] * t))
        sc = _jitter_color(rng, (0.38, 0.27, 0.13) if rng.random() < 0.7 else (0.40, 0.42, 0.18), 0.12)
        dr = ImageDraw.Draw(img)
        w = int(round(g["stem_w"]))
        dr.line(pts, fill=tuple(int(v * 255) for v in sc) + (255,), width=max(2, w), joint="curve")
        dr.line(pts[:3], fill=tuple(int(v * 255 * 0.7) for v in sc) + (255,), width=max(2, w + 1), joint="curve")
    return img


# --------------------------------------------------------------------------
# background


def render_background(rng, W, H):
    kind = rng.integers(0, 5)
    c1 = rng.uniform(0.1, 0.95, 3)
    c2 = np.clip(c1 + rng.normal(0, 0.15, 3), 0, 1)
    yy = np.arange(H, dtype=np.float32)[:, None]
    xx = np.arange(W, dtype=np.float32)[None, :]
    t = (yy / H)[..., None]
    bg = (c1 * (1 - t) + c2 * t).astype(np.float32) * np.ones((1, W, 1), np.float32)
    if kind == 1:  # wood grain
        freq = rng.uniform(0.02, 0.08)
        warp = 8 * _noise_field(rng, H, W, 5)
        ang = rng.uniform(0, np.pi)
        u = xx * math.cos(ang) + yy * math.sin(ang) + warp
        stripes = 0.5 + 0.5 * np.sin(u * freq * 2 * np.pi)
        wood = _jitter_color(rng, (0.6, 0.42, 0.25), 0.25)
        bg = wood * (0.8 + 0.25 * stripes[..., None])
    elif kind == 2:  # checked cloth
        s = rng.uniform(12, 45)
        ca = rng.uniform(0, 1, 3)
        cb = rng.uniform(0, 1, 3)
        chk = ((np.floor(xx / s) + np.floor(yy / s)) % 2)[..., None]
        bg = ca * chk + cb * (1 - chk)
        bg = bg * 0.6 + bg.mean() * 0.4
    elif kind == 3:  # noisy texture
        bg = bg * (1 + 0.25 * _fbm(rng, H, W, ((8, 0.5), (32, 0.3), (90, 0.2))))[..., None]
    bg = np.clip(bg, 0, 1).astype(np.float32)
    img = Image.fromarray((bg * 255).astype(np.uint8), "RGB")
    # clutter
    dr = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 14))):
        col = tuple(int(v) for v in rng.integers(0, 256, 3))
        k = rng.integers(0, 6)
        x, y = rng.uniform(-0.1, 1.1) * W, rng.uniform(-0.1, 1.1) * H
        s = rng.uniform(0.03, 0.35) * min(W, H)
        if k == 0:
            dr.rectangle([x, y, x + s * rng.uniform(0.5, 2), y + s * rng.uniform(0.5, 2)], fill=col)
        elif k == 1:
            dr.ellipse([x, y, x + s, y + s * rng.uniform(0.5, 1.5)], fill=col)
        elif k == 2:
            dr.line([(x, y), (x + rng.normal(0, s * 2), y + rng.normal(0, s * 2))], fill=col, width=int(rng.integers(1, 8)))
        elif k == 3:  # leaf
            leaf = tuple(int(v) for v in (_jitter_color(rng, (0.25, 0.5, 0.15), 0.3) * 255))
            _ellipse(dr, (x, y), s * 0.7, s * 0.25, rng.uniform(0, 180), leaf)
        elif k == 4:  # polygon
            pts = [(x + rng.normal(0, s), y + rng.normal(0, s)) for _ in range(int(rng.integers(3, 7)))]
            dr.polygon(pts, fill=col)
        else:  # a round fruit that is not a pear
            r = s * 0.5
            fc = tuple(int(v) for v in (_jitter_color(rng, [(0.8, 0.15, 0.1), (0.95, 0.55, 0.1), (0.4, 0.1, 0.3)][int(rng.integers(3))], 0.1) * 255))
            dr.ellipse([x - r, y - r, x + r, y + r], fill=fc)
            dr.ellipse([x - r * 0.5, y - r * 0.6, x - r * 0.1, y - r * 0.2], fill=tuple(min(255, v + 50) for v in fc))
    if rng.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 3.0)))
    return img


# --------------------------------------------------------------------------
# scenes

SIZES = [(480, 360), (360, 480), (640, 480), (400, 400), (512, 288), (320, 240), (600, 400), (300, 420)]


def make_scene(seed, index, cls=None, size=None, empty=False, jpeg=True):
    """Scene `index` of stream `seed`. Returns (PIL RGB image, box or None, cls).

    cls: forced class (default: index % 8). empty: no pear (cls = -1).
    """
    rng = np.random.default_rng([seed, index])
    if cls is None:
        cls = index % len(CLASSES)
    W, H = size if size is not None else SIZES[int(rng.integers(len(SIZES)))]
    if size is None:
        f = rng.uniform(0.85, 1.3)
        W, H = int(W * f), int(H * f)
    img = render_background(rng, W, H)
    box = None
    if not empty:
        # light from the upper half, somewhat towards the viewer
        la = rng.uniform(-np.pi, 0)
        light = np.array([math.cos(la) * 0.7, math.sin(la) * 0.7, rng.uniform(0.5, 1.0)], np.float32)
        target_h = rng.uniform(0.35, 0.9) * min(W, H)
        r1 = target_h / 3.2
        pear = render_pear(rng, r1, cls, light)
        ang = rng.uniform(-40, 40) if rng.random() < 0.8 else rng.choice([-1, 1]) * rng.uniform(50, 100)
        pear = pear.rotate(ang, resample=Image.BICUBIC, expand=True)
        a = np.asarray(pear)[..., 3]
        ys, xs = np.nonzero(a > 127)
        bx0, by0, bx1, by1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        pear = pear.crop((bx0, by0, bx1, by1))
        pw, ph = pear.size
        if pw > W * 0.96 or ph > H * 0.96:
            s = min(W * 0.96 / pw, H * 0.96 / ph)
            pear = pear.resize((max(1, int(pw * s)), max(1, int(ph * s))), Image.BICUBIC)
            pw, ph = pear.size
        x0 = int(rng.integers(0, W - pw + 1))
        y0 = int(rng.integers(0, H - ph + 1))
        # soft cast shadow
        sh = Image.new("L", (W, H), 0)
        off = (rng.uniform(-0.08, 0.08) * pw, rng.uniform(0.02, 0.1) * ph)
        sh.paste(pear.getchannel("A"), (int(x0 + off[0]), int(y0 + off[1])))
        sh = sh.filter(ImageFilter.GaussianBlur(max(2, pw * 0.06)))
        dark = Image.new("RGB", (W, H), (0, 0, 0))
        img = Image.composite(dark, img, sh.point(lambda v: int(v * 0.45)))
        img.paste(pear, (x0, y0), pear)
        a = np.asarray(pear)[..., 3]
        ys, xs = np.nonzero(a > 127)
        box = (float(x0 + xs.min()), float(y0 + ys.min()), float(x0 + xs.max() + 1), float(y0 + ys.max() + 1))
    else:
        cls = -1
    # global lighting: brightness, colour cast, gradient, noise, blur
    arr = np.asarray(img).astype(np.float32)
    xs = (np.arange(W, dtype=np.float32) / W - 0.5)[None, :]
    ys = (np.arange(H, dtype=np.float32) / H - 0.5)[:, None]
    ga = rng.uniform(0, 2 * np.pi)
    grad = 1 + np.float32(rng.uniform(0, 0.35)) * (xs * np.float32(math.cos(ga)) + ys * np.float32(math.sin(ga)))
    gain = (rng.uniform(0.7, 1.25) * rng.uniform(0.92, 1.08, 3)).astype(np.float32)
    arr *= gain
    arr *= grad[..., None]
    sigma = rng.uniform(0, 6.0)
    arr += rng.standard_normal(arr.shape, dtype=np.float32) * np.float32(sigma)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    if rng.random() < 0.25:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    if jpeg:
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=int(rng.integers(55, 95)))
        buf.seek(0)
        img = Image.open(buf).convert("RGB")
    return img, box, cls


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("preview", help="write a contact sheet of scenes")
    p.add_argument("--out", default="preview.png")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--n", type=int, default=24)
    p.add_argument("--crops", action="store_true", help="show 128px classifier crops instead")
    a = ap.parse_args()
    from common import crop_resize
    tiles = []
    for i in range(a.n):
        img, box, cls = make_scene(a.seed, i)
        if a.crops:
            t = Image.fromarray(crop_resize(img, box))
        else:
            t = img.copy()
            ImageDraw.Draw(t).rectangle(box, outline=(255, 0, 0), width=2)
            t.thumbnail((240, 240))
        ImageDraw.Draw(t).text((3, 3), CLASSES[cls], fill=(255, 255, 255))
        tiles.append(t)
    tw = max(t.size[0] for t in tiles)
    th = max(t.size[1] for t in tiles)
    cols = 8
    sheet = Image.new("RGB", (cols * tw, math.ceil(len(tiles) / cols) * th), (40, 40, 40))
    for i, t in enumerate(tiles):
        sheet.paste(t, ((i % cols) * tw, (i // cols) * th))
    sheet.save(a.out)


if __name__ == "__main__":
    main()
