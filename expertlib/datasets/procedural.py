"""Image families rendered from a seed, and renderers for the packaged real images.

Every function takes a ``numpy.random.Generator`` and per-image factors and returns uint8 RGB images
``[n, size, size, 3]``; nothing is random outside the generator, so a seed fixes every pixel.

Procedural families follow their real counterparts. Here: dSprites (Matthey et al. 2017: square/ellipse/heart,
6 scales, 40 orientations, 32x32 positions, white on black), CLEVR-like scenes (shaded spheres, cubes and
cylinders in perspective on a grey floor), gratings, lattices, colour palettes and stroke glyphs
(Omniglot-like), and the renderers of packaged real images. The specialized group's families (EuroSAT-like land
cover, PCam-like tissue, retinopathy-like fundus crops, RESISC-like aerial scenes) are in
:mod:`expertlib.datasets.procedural_specialized`; the families that widen the benchmark to VTAB-1k's 19 in
:mod:`expertlib.datasets.procedural_natural` (SVHN-like printed characters, DTD-like textures, pets-like coated
animals) and :mod:`expertlib.datasets.procedural_structured` (smallNORB-like toys, KITTI-like road scenes).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from expertlib.datasets.drawing import (
    SIZE,
    affine,
    contrasting_pair,
    grid,
    rotation_theta,
    smooth_noise,
    soft,
    to_uint8,
)

# -- dSprites ---------------------------------------------------------------------------------------------------
DSPRITES_SHAPES = ("square", "ellipse", "heart")
DSPRITES_SCALES = np.linspace(0.5, 1.0, 6)
DSPRITES_ORIENTATIONS = np.linspace(0, 2 * np.pi, 40, endpoint=False)
DSPRITES_POSITIONS = np.linspace(0, 1, 32)


def dsprites(
    rng: np.random.Generator,
    shape: np.ndarray,
    scale: np.ndarray,
    orientation: np.ndarray,
    pos_x: np.ndarray,
    pos_y: np.ndarray,
    size: int = SIZE,
) -> np.ndarray:
    """White sprites on black, rendered at 2x and averaged down (dSprites is 64x64 binary)."""
    n = len(shape)
    yy, xx = grid(2 * size)
    cx = ((pos_x * 2 - 1) * 0.68)[:, None, None]
    cy = ((pos_y * 2 - 1) * 0.68)[:, None, None]
    c, s = np.cos(orientation)[:, None, None], np.sin(orientation)[:, None, None]
    half = (0.36 * scale)[:, None, None]
    u = ((xx - cx) * c + (yy - cy) * s) / half
    v = (-(xx - cx) * s + (yy - cy) * c) / half
    sh = shape[:, None, None]
    square = np.maximum(np.abs(u), np.abs(v)) <= 0.85
    ellipse = (u / 1.0) ** 2 + (v / 0.5) ** 2 <= 1.0
    hu, hv = u * 1.15, -v * 1.15 + 0.15
    heart = (hu**2 + hv**2 - 1) ** 3 - hu**2 * hv**3 <= 0
    mask = np.where(sh == 0, square, np.where(sh == 1, ellipse, heart)).astype(np.float32)
    mask = mask.reshape(n, size, 2, size, 2).mean(axis=(2, 4))
    img = np.repeat(mask[..., None], 3, axis=3)
    return to_uint8(img, rng)


# -- CLEVR-like scenes ------------------------------------------------------------------------------------------
CLEVR_SHAPES = ("sphere", "cube", "cylinder")
CLEVR_COLORS = np.array(
    [[0.5, 0.5, 0.5], [0.8, 0.15, 0.15], [0.15, 0.3, 0.85], [0.15, 0.65, 0.2], [0.55, 0.35, 0.15],
     [0.55, 0.2, 0.7], [0.2, 0.75, 0.75], [0.9, 0.85, 0.2]]
)  # fmt: skip


CLEVR_Y = (-0.45, 0.8)  # screen heights of object centres: top = far, bottom = near


def clevr(
    rng: np.random.Generator, counts: np.ndarray, front_y: np.ndarray | None = None, size: int = SIZE
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Scenes with ``counts[i]`` objects. Returns images and, per image, the nearest object's shape, size
    (0 small, 1 large) and depth in [0, 1] (0 = nearest possible). ``front_y`` fixes the nearest object's
    screen height (the others lie behind it)."""
    yy, xx = grid(size)
    n = len(counts)
    out = np.empty((n, size, size, 3))
    meta = {k: np.zeros(n) for k in ("nearest_shape", "nearest_size", "nearest_depth")}
    for i, count in enumerate(counts):
        floor = 0.42 + 0.12 * (yy + 1) / 2 + rng.uniform(-0.04, 0.04)
        img = np.repeat(floor[..., None], 3, axis=2)
        objs: list[tuple[float, float, float, int, int, np.ndarray, bool]] = []
        tries = 0
        while len(objs) < count and tries < 400:
            tries += 1
            if front_y is None:
                y = rng.uniform(*CLEVR_Y)
            else:
                y = front_y[i] if not objs else rng.uniform(CLEVR_Y[0], front_y[i])
            x = rng.uniform(-0.85, 0.85)
            big = int(rng.integers(2))
            persp = 0.55 + 0.55 * (y - CLEVR_Y[0]) / (CLEVR_Y[1] - CLEVR_Y[0])
            r = (0.22 if big else 0.14) * persp
            if any((x - o[1]) ** 2 + (y - o[0]) ** 2 < (0.75 * (r + o[2])) ** 2 for o in objs):
                continue
            objs.append(
                (
                    y,
                    x,
                    r,
                    int(rng.integers(3)),
                    big,
                    CLEVR_COLORS[rng.integers(len(CLEVR_COLORS))],
                    bool(rng.integers(2)),
                )
            )
        for y, x, r, shape, _, color, metal in sorted(objs, key=lambda o: o[0]):  # far (top) first
            dx, dy = xx - x, yy - y
            if shape == 0:
                d = np.sqrt(dx**2 + dy**2)
                cover = soft(d - r, size)
                shade = 0.65 + 0.45 * np.clip(
                    1 - np.sqrt((dx + 0.4 * r) ** 2 + (dy + 0.4 * r) ** 2) / (1.3 * r), 0, 1
                )
            elif shape == 1:
                q = np.maximum(np.abs(dx), np.abs(dy)) - r * 0.85
                cover = soft(q, size)
                shade = np.where(dy < -0.35 * r, 1.15, np.where(dx > 0.3 * r, 0.7, 0.9))
            else:
                body = np.maximum(np.abs(dx) - 0.8 * r, np.abs(dy) - 0.8 * r)
                top = np.sqrt((dx / (0.8 * r)) ** 2 + ((dy + 0.8 * r) / (0.3 * r)) ** 2) - 1
                cover = np.maximum(soft(body, size), soft(top * 0.3 * r, size))
                shade = np.where(top < 0, 1.2, 0.85)
            col = np.clip(color[None, None] * shade[..., None], 0, 1)
            if metal:
                spot = np.exp(-((dx + 0.35 * r) ** 2 + (dy + 0.35 * r) ** 2) / (0.02 * r))
                col = np.clip(col + 0.6 * spot[..., None], 0, 1)
            img = img * (1 - cover[..., None]) + cover[..., None] * col
        out[i] = img
        if objs:
            near = max(objs, key=lambda o: o[0])
            meta["nearest_shape"][i], meta["nearest_size"][i] = near[3], near[4]
            meta["nearest_depth"][i] = (CLEVR_Y[1] - near[0]) / (CLEVR_Y[1] - CLEVR_Y[0])
    return to_uint8(out, rng, noise=0.02), meta


# -- gratings, lattices, palettes ----------------------------------------------------------------------------------
def gratings(rng: np.random.Generator, orientation_deg: np.ndarray, frequency: np.ndarray, size: int = SIZE):
    """Sinusoidal gratings: ``frequency`` cycles across the image, random phase, colours and contrast."""
    n = len(orientation_deg)
    yy, xx = grid(size)
    th = np.deg2rad(orientation_deg + rng.uniform(-4, 4, n))[:, None, None]
    f = (frequency * rng.uniform(0.95, 1.05, n))[:, None, None]
    phase = rng.uniform(0, 2 * np.pi, n)[:, None, None]
    wave = 0.5 + 0.5 * np.sin(np.pi * f * (xx * np.cos(th) + yy * np.sin(th)) + phase)
    fg, bg = contrasting_pair(rng, n, 0.25)
    img = bg[:, None, None] + wave[..., None] * (fg - bg)[:, None, None]
    return to_uint8(img, rng, noise=0.06)


LATTICE_KINDS = ("checker", "dots", "crosses", "rings")


def lattices(rng: np.random.Generator, kind: np.ndarray, period_px: np.ndarray, size: int = SIZE):
    n = len(kind)
    yy, xx = grid(size)
    th = rng.uniform(-0.3, 0.3, n)[:, None, None]
    cells = (size / period_px)[:, None, None] / 2
    u = (xx * np.cos(th) - yy * np.sin(th)) * cells + rng.uniform(0, 1, n)[:, None, None]
    v = (xx * np.sin(th) + yy * np.cos(th)) * cells + rng.uniform(0, 1, n)[:, None, None]
    fu, fv = u - np.floor(u) - 0.5, v - np.floor(v) - 0.5
    k = kind[:, None, None]
    checker = ((np.floor(u) + np.floor(v)) % 2).astype(float)
    dist = np.sqrt(fu**2 + fv**2)
    dots = (dist < 0.28).astype(float)
    crosses = ((np.abs(fu) < 0.11) | (np.abs(fv) < 0.11)).astype(float)
    rings = (np.abs(dist - 0.3) < 0.09).astype(float)
    pattern = np.where(k == 0, checker, np.where(k == 1, dots, np.where(k == 2, crosses, rings)))
    fg, bg = contrasting_pair(rng, n, 0.3)
    img = bg[:, None, None] + pattern[..., None] * (fg - bg)[:, None, None]
    return to_uint8(img, rng, noise=0.06)


def palette_table(count: int, colors: int = 4, seed: int = 1234) -> np.ndarray:
    """``count`` fixed palettes of ``colors`` colours each (the same for every benchmark seed)."""
    return np.random.default_rng(seed).uniform(0.05, 0.95, (count, colors, 3))


def palettes(rng: np.random.Generator, palette: np.ndarray, table: np.ndarray, size: int = SIZE):
    """Voronoi mosaics coloured from the class's palette, with brightness jitter."""
    n = len(palette)
    yy, xx = grid(size)
    out = np.empty((n, size, size, 3))
    for i in range(n):
        k = int(rng.integers(5, 12))
        pts = rng.uniform(-1, 1, (k, 2))
        region = np.argmin((yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2, axis=-1)
        cols = table[palette[i]][rng.integers(table.shape[1], size=k)] + rng.normal(0, 0.06, (k, 3))
        out[i] = cols[region] * rng.uniform(0.85, 1.15)
    return to_uint8(out, rng, noise=0.05)


# -- glyphs -----------------------------------------------------------------------------------------------------
def glyph_prototypes(count: int, seed: int, strokes: int = 3) -> np.ndarray:
    """``count`` glyphs, each ``strokes`` quadratic Bezier strokes (control points in [-0.7, 0.7])."""
    return np.random.default_rng(seed).uniform(-0.7, 0.7, (count, strokes, 3, 2))


def glyphs(
    rng: np.random.Generator, prototypes: np.ndarray, cls: np.ndarray, size: int = SIZE, chunk: int = 256
):
    """Hand-drawn-like renderings: jittered control points, random affine, stroke width and colours."""
    n = len(cls)
    yy, xx = grid(size)
    pix = np.stack([xx.ravel(), yy.ravel()], axis=1)  # [P, 2]
    t = np.linspace(0, 1, 20)[:, None]
    out = np.empty((n, size, size, 3))
    fg, bg = contrasting_pair(rng, n, 0.4, light_on_dark=True)
    for s in range(0, n, chunk):
        idx = np.arange(s, min(n, s + chunk))
        ctrl = prototypes[cls[idx]] + rng.normal(0, 0.05, prototypes[cls[idx]].shape)  # [m, S, 3, 2]
        pts = ((1 - t) ** 2)[None, None] * ctrl[:, :, None, 0] + (2 * t * (1 - t))[None, None] * ctrl[
            :, :, None, 1
        ]
        pts = pts + (t**2)[None, None] * ctrl[:, :, None, 2]  # [m, S, T, 2]
        pts = pts.reshape(len(idx), -1, 2)
        ang = rng.uniform(-0.2, 0.2, len(idx))
        sc = rng.uniform(0.85, 1.1, len(idx))
        rot = np.stack([np.stack([np.cos(ang), -np.sin(ang)], 1), np.stack([np.sin(ang), np.cos(ang)], 1)], 1)
        pts = np.einsum("mij,mpj->mpi", rot, pts) * sc[:, None, None] + rng.uniform(
            -0.12, 0.12, (len(idx), 1, 2)
        )
        d = (
            torch.cdist(
                torch.from_numpy(np.broadcast_to(pix, (len(idx), *pix.shape)).astype(np.float32)),
                torch.from_numpy(pts.astype(np.float32)),
            )
            .min(-1)
            .values.numpy()
        )  # [m, P]
        width = rng.uniform(0.06, 0.1, len(idx))[:, None]
        cover = soft(d - width, size).reshape(len(idx), size, size)
        out[idx] = bg[idx, None, None] + cover[..., None] * (fg[idx] - bg[idx])[:, None, None]
    return to_uint8(out, rng, noise=0.05)


# -- renderers for real packaged images -------------------------------------------------------------------------
def silhouettes(
    rng: np.random.Generator, masks: np.ndarray, rotation_k: np.ndarray, size: int = SIZE
) -> np.ndarray:
    """Animal silhouettes ([n, 28, 28] uint8) coloured on textured backgrounds, rotated by k*90 degrees
    plus a small jitter, zoomed and shifted."""
    n = len(masks)
    angle = rotation_k * (np.pi / 2) + rng.uniform(-0.2, 0.2, n)
    theta = rotation_theta(angle, rng.uniform(0.8, 1.1, n), rng.uniform(-0.12, 0.12, (n, 2)))
    cover = np.clip(affine(masks / 255.0, theta, size), 0, 1)
    fg, bg = contrasting_pair(rng, n, 0.4, light_on_dark=True)
    tex = smooth_noise(rng, n, 1.8, size)[..., None]
    back = bg[:, None, None] * (0.7 + 0.6 * tex)
    img = back * (1 - cover[..., None]) + fg[:, None, None] * cover[..., None]
    return to_uint8(img, rng, noise=0.04)


def digits(rng: np.random.Generator, images: np.ndarray, mirror: np.ndarray, size: int = SIZE) -> np.ndarray:
    """8x8 handwritten digits ([n, 8, 8] in [0, 1]) upsampled, rotated, zoomed, optionally mirrored, coloured."""
    n = len(images)
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1)))
    theta = rotation_theta(
        rng.uniform(-0.2, 0.2, n), rng.uniform(0.6, 0.85, n), rng.uniform(-0.15, 0.15, (n, 2)), mirror
    )
    cover = np.clip(affine(padded, theta, size), 0, 1)
    fg, bg = contrasting_pair(rng, n, 0.4, light_on_dark=True)
    img = bg[:, None, None] * (1 - cover[..., None]) + fg[:, None, None] * cover[..., None]
    return to_uint8(img, rng, noise=0.05)


def photo_tiles(
    rng: np.random.Generator, image: np.ndarray, n: int, x_range: tuple[float, float], size: int = SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """Random square crops (24-64 pixels) lying inside the horizontal band ``x_range`` (fractions of the
    width) of ``image``, resized to ``size``. Returns tiles and their boxes [n, 4] (y, x, side, side)."""
    h, w = image.shape[:2]
    x0, x1 = int(x_range[0] * w), int(x_range[1] * w)
    max_side = min(64, x1 - x0, h)
    if max_side < 16:
        raise ValueError(f"band {x_range} of a {w}-wide image is too narrow for tiles")
    sides = rng.integers(min(24, max_side), max_side + 1, n)
    ys = np.array([rng.integers(0, h - s + 1) for s in sides])
    xs = np.array([rng.integers(x0, x1 - s + 1) for s in sides])
    src = torch.tensor(image).permute(2, 0, 1).float()[None] / 255.0
    tiles = np.empty((n, size, size, 3))
    for i, (y, x, s) in enumerate(zip(ys, xs, sides, strict=True)):
        crop = src[:, :, y : y + s, x : x + s]
        tiles[i] = (
            F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
            .permute(1, 2, 0)
            .numpy()
        )
    tiles = tiles * rng.uniform(0.85, 1.15, (n, 1, 1, 1))
    return to_uint8(tiles, rng, noise=0.02), np.stack([ys, xs, sides, sides], 1)
