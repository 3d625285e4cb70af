"""Image families rendered from a seed, and renderers for the packaged real images.

Every function takes a ``numpy.random.Generator`` and per-image factors and returns uint8 RGB images
``[n, size, size, 3]``; nothing is random outside the generator, so a seed fixes every pixel.

Procedural families follow their real counterparts: dSprites (Matthey et al. 2017: square/ellipse/heart,
6 scales, 40 orientations, 32x32 positions, white on black), CLEVR-like scenes (shaded spheres, cubes and
cylinders in perspective on a grey floor), EuroSAT-like land cover, PCam-like tissue, retinopathy-like
fundus crops, gratings, lattices, colour palettes and stroke glyphs (Omniglot-like); and, for the tasks that
widen the benchmark to VTAB-1k's 19, SVHN-like printed characters, DTD-like textures, pets-like coated
animals, RESISC-like aerial scenes, smallNORB-like toys (ray-cast ellipsoids) and KITTI-like road scenes.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

SIZE = 32


# -- helpers ----------------------------------------------------------------------------------------------------
def grid(size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-1, 1]: (y, x), each [size, size]; y grows downwards."""
    c = (np.arange(size) + 0.5) / size * 2 - 1
    return np.meshgrid(c, c, indexing="ij")


def soft(sd: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Anti-aliased coverage from a signed distance (negative inside), one pixel wide."""
    return np.clip(0.5 - sd / (2.0 / size), 0.0, 1.0)


def to_uint8(img: np.ndarray, rng: np.random.Generator, noise: float = 0.0) -> np.ndarray:
    if noise > 0:
        img = img + rng.normal(0.0, noise, img.shape)
    return (np.clip(img, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def random_colors(rng: np.random.Generator, n: int, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    return rng.uniform(lo, hi, (n, 3))


def contrasting_pair(
    rng: np.random.Generator, n: int, min_gap: float = 0.35, light_on_dark: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Foreground/background colours whose mean luminance differs by at least ``min_gap``
    (``light_on_dark``: the foreground is always the lighter one, as in MNIST-style data)."""
    fg = random_colors(rng, n)
    bg = random_colors(rng, n)
    if light_on_dark:
        swap = fg.mean(1) < bg.mean(1)
        fg[swap], bg[swap] = bg[swap].copy(), fg[swap].copy()
    gap = fg.mean(1) - bg.mean(1)
    need = np.abs(gap) < min_gap
    shift = np.where(gap >= 0, 1.0, -1.0)[:, None] * (min_gap - np.abs(gap))[:, None] / 2
    fg = np.where(need[:, None], np.clip(fg + shift, 0, 1), fg)
    bg = np.where(need[:, None], np.clip(bg - shift, 0, 1), bg)
    return fg, bg


def smooth_noise(rng: np.random.Generator, n: int, beta: float, size: int = SIZE) -> np.ndarray:
    """Power-law (1/f^beta) noise fields in [0, 1], [n, size, size]."""
    f = np.fft.fftfreq(size)
    radius = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    radius[0, 0] = 1.0
    spectrum = (rng.normal(size=(n, size, size)) + 1j * rng.normal(size=(n, size, size))) / radius**beta
    spectrum[:, 0, 0] = 0
    field = np.fft.ifft2(spectrum).real
    lo = field.min(axis=(1, 2), keepdims=True)
    hi = field.max(axis=(1, 2), keepdims=True)
    return (field - lo) / np.maximum(hi - lo, 1e-8)


def _paint(img: np.ndarray, cover: np.ndarray, color: np.ndarray) -> None:
    img[:] = img * (1 - cover[..., None]) + cover[..., None] * color


def _affine(src: np.ndarray, theta: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Resample [n, h, w] float sources through inverse affine maps ``theta`` [n, 2, 3] onto size x size."""
    s = torch.from_numpy(np.ascontiguousarray(src, dtype=np.float32))[:, None]
    t = torch.from_numpy(theta.astype(np.float32))
    g = F.affine_grid(t, [len(src), 1, size, size], align_corners=False)
    return F.grid_sample(s, g, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0].numpy()


def _rotation_theta(
    angle: np.ndarray, scale: np.ndarray, shift: np.ndarray, mirror: np.ndarray | None = None
):
    """Inverse maps for grid_sample: output -> source coordinates (rotate by angle, zoom by scale, shift)."""
    c, s = np.cos(angle), np.sin(angle)
    mx = np.where(mirror, -1.0, 1.0) if mirror is not None else np.ones_like(angle)
    theta = np.zeros((len(angle), 2, 3))
    theta[:, 0, 0], theta[:, 0, 1] = mx * c / scale, mx * -s / scale
    theta[:, 1, 0], theta[:, 1, 1] = s / scale, c / scale
    theta[:, :, 2] = -shift / scale[:, None]
    return theta


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


# -- EuroSAT-like land cover --------------------------------------------------------------------------------------
LAND_COVER = (
    "annual_crop", "forest", "herbaceous", "highway", "industrial",
    "pasture", "permanent_crop", "residential", "river", "sea_lake",
)  # fmt: skip


def land_cover(rng: np.random.Generator, cls: np.ndarray, size: int = SIZE) -> np.ndarray:
    n = len(cls)
    yy, xx = grid(size)
    out = np.empty((n, size, size, 3))
    green = np.array([0.25, 0.45, 0.2])
    brown = np.array([0.5, 0.42, 0.3])
    for i, c in enumerate(cls):
        jitter = rng.normal(0, 0.05, 3)
        base_n = smooth_noise(rng, 1, 2.0, size)[0]
        land = (green + (brown - green) * rng.uniform(0, 1) + jitter)[None, None] * (
            0.8 + 0.4 * base_n[..., None]
        )
        img = land.copy()
        th = rng.uniform(0, np.pi)
        u = xx * np.cos(th) + yy * np.sin(th)
        v = -xx * np.sin(th) + yy * np.cos(th)
        if c == 0:  # annual crop: striped fields
            stripes = 0.5 + 0.5 * np.sign(np.sin(u * rng.uniform(12, 20)))
            split = np.sign(v - rng.uniform(-0.5, 0.5))
            col_a = np.array([0.55, 0.5, 0.25]) + jitter
            col_b = np.array([0.35, 0.55, 0.2]) + jitter
            img = np.where(split[..., None] > 0, col_a, col_b)[...] * (0.8 + 0.3 * stripes[..., None])
        elif c == 1:  # forest: dark, fine texture
            tex = smooth_noise(rng, 1, 1.2, size)[0]
            img = (np.array([0.1, 0.28, 0.12]) + jitter)[None, None] * (0.6 + 0.8 * tex[..., None])
        elif c == 2:  # herbaceous vegetation: yellow-green, mid texture with speckles
            tex = smooth_noise(rng, 1, 1.7, size)[0]
            img = (np.array([0.45, 0.5, 0.25]) + jitter)[None, None] * (0.75 + 0.5 * tex[..., None])
        elif c == 3:  # highway: a grey band through the land
            w = rng.uniform(0.06, 0.12)
            _paint(
                img, soft(np.abs(v - rng.uniform(-0.5, 0.5)) - w, size), np.array([0.55, 0.55, 0.55]) + jitter
            )
        elif c == 4:  # industrial: large bright roofs
            img = img * 0.6 + 0.25
            for _ in range(int(rng.integers(3, 7))):
                cy, cx, h, w = (
                    rng.uniform(-0.8, 0.8),
                    rng.uniform(-0.8, 0.8),
                    rng.uniform(0.15, 0.4),
                    rng.uniform(0.15, 0.4),
                )
                box = np.maximum(np.abs(yy - cy) - h, np.abs(xx - cx) - w)
                _paint(img, soft(box, size), np.full(3, rng.uniform(0.6, 0.9)))
        elif c == 5:  # pasture: smooth, light green
            tex = smooth_noise(rng, 1, 3.0, size)[0]
            img = (np.array([0.4, 0.58, 0.28]) + jitter)[None, None] * (0.9 + 0.2 * tex[..., None])
        elif c == 6:  # permanent crop: orchard rows of dots
            period = rng.uniform(0.18, 0.28)
            fu = (u / period) % 1 - 0.5
            fv = (v / period) % 1 - 0.5
            dots = soft(np.sqrt(fu**2 + fv**2) * period - 0.05, size)
            img = (brown + jitter)[None, None] * np.ones_like(img)
            _paint(img, dots, np.array([0.2, 0.45, 0.15]) + jitter)
        elif c == 7:  # residential: small roofs on a street grid
            img = np.full_like(img, 0.5) + jitter
            period = rng.uniform(0.25, 0.35)
            fu = (u / period) % 1 - 0.5
            fv = (v / period) % 1 - 0.5
            roofs = soft(np.maximum(np.abs(fu), np.abs(fv)) * period - 0.3 * period, size)
            _paint(img, roofs, np.array([0.65, 0.3, 0.25]) * rng.uniform(0.8, 1.2))
        elif c == 8:  # river: a meandering blue band
            path = v - 0.25 * np.sin(u * rng.uniform(2, 4) + rng.uniform(0, 6))
            _paint(
                img, soft(np.abs(path) - rng.uniform(0.08, 0.16), size), np.array([0.15, 0.3, 0.5]) + jitter
            )
        else:  # sea or lake: blue, sometimes with a shore
            tex = smooth_noise(rng, 1, 2.5, size)[0]
            water = (np.array([0.1, 0.25, 0.45]) + jitter)[None, None] * (0.85 + 0.3 * tex[..., None])
            shore = soft(-(v - rng.uniform(0.3, 1.5)), size) if rng.uniform() < 0.4 else np.ones_like(u)
            img = img * (1 - shore[..., None]) + water * shore[..., None]
        out[i] = img
    return to_uint8(out, rng, noise=0.03)


# -- PCam-like tissue -------------------------------------------------------------------------------------------
def tissue(rng: np.random.Generator, label: np.ndarray, size: int = SIZE) -> np.ndarray:
    """H&E-like patches: label 1 has more, larger, darker, irregular nuclei (the ranges overlap)."""
    n = len(label)
    yy, xx = grid(size)
    out = np.empty((n, size, size, 3))
    for i, lab in enumerate(label):
        tex = smooth_noise(rng, 1, 1.8, size)[0]
        img = np.array([0.9, 0.65, 0.78])[None, None] * (0.85 + 0.2 * tex[..., None]) + rng.normal(0, 0.03, 3)
        count = int(rng.integers(9, 23) if lab else rng.integers(4, 15))
        for _ in range(count):
            r = rng.uniform(0.1, 0.2) if lab else rng.uniform(0.065, 0.14)
            ecc = rng.uniform(0.6, 1.0) if lab else rng.uniform(0.8, 1.0)
            th = rng.uniform(0, np.pi)
            cy, cx = rng.uniform(-1, 1, 2)
            u = (xx - cx) * np.cos(th) + (yy - cy) * np.sin(th)
            v = -(xx - cx) * np.sin(th) + (yy - cy) * np.cos(th)
            d = np.sqrt((u / r) ** 2 + (v / (r * ecc)) ** 2) - 1
            dark = rng.uniform(0.45, 0.7) if lab else rng.uniform(0.35, 0.55)
            _paint(img, soft(d * r * ecc, size), np.array([0.45, 0.25, 0.6]) * (1.2 - dark))
        out[i] = img
    return to_uint8(out, rng, noise=0.03)


# -- retinopathy-like fundus crops --------------------------------------------------------------------------------
def fundus(rng: np.random.Generator, grade: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Grades 0-4 by lesion load: microaneurysms (dark red dots), then exudates (yellow) and haemorrhages."""
    n = len(grade)
    yy, xx = grid(size)
    out = np.empty((n, size, size, 3))
    ma_ranges = ((0, 1), (1, 4), (3, 9), (7, 14), (11, 20))
    for i, g in enumerate(grade):
        cy, cx = rng.uniform(-0.5, 0.5, 2)
        glow = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 1.5)
        img = np.array([0.75, 0.35, 0.15])[None, None] * (0.6 + 0.5 * glow[..., None]) + rng.normal(
            0, 0.04, 3
        )
        for _ in range(int(rng.integers(2, 5))):  # vessels
            th = rng.uniform(0, np.pi)
            u = xx * np.cos(th) + yy * np.sin(th)
            v = -xx * np.sin(th) + yy * np.cos(th)
            path = v - rng.uniform(-0.8, 0.8) - 0.2 * np.sin(u * rng.uniform(1, 3) + rng.uniform(0, 6))
            _paint(
                img, 0.8 * soft(np.abs(path) - rng.uniform(0.02, 0.06), size), np.array([0.45, 0.08, 0.05])
            )
        lo, hi = ma_ranges[int(g)]
        for _ in range(int(rng.integers(lo, hi))):
            cy, cx = rng.uniform(-0.95, 0.95, 2)
            _paint(
                img,
                soft(np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) - rng.uniform(0.03, 0.06), size),
                np.array([0.35, 0.02, 0.02]),
            )
        if g >= 3:
            for _ in range(int(rng.integers(1, 4) if g == 3 else rng.integers(3, 7))):
                cy, cx = rng.uniform(-0.9, 0.9, 2)
                _paint(
                    img,
                    soft(np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) - rng.uniform(0.04, 0.1), size),
                    np.array([0.95, 0.85, 0.35]),
                )
        if g == 4:
            for _ in range(int(rng.integers(1, 3))):
                cy, cx = rng.uniform(-0.8, 0.8, 2)
                blot = np.sqrt(((yy - cy) / 1.4) ** 2 + (xx - cx) ** 2) - rng.uniform(0.1, 0.2)
                _paint(img, soft(blot, size), np.array([0.4, 0.03, 0.03]))
        out[i] = img
    return to_uint8(out, rng, noise=0.03)


# -- renderers for real packaged images -------------------------------------------------------------------------
def silhouettes(
    rng: np.random.Generator, masks: np.ndarray, rotation_k: np.ndarray, size: int = SIZE
) -> np.ndarray:
    """Animal silhouettes ([n, 28, 28] uint8) coloured on textured backgrounds, rotated by k*90 degrees
    plus a small jitter, zoomed and shifted."""
    n = len(masks)
    angle = rotation_k * (np.pi / 2) + rng.uniform(-0.2, 0.2, n)
    theta = _rotation_theta(angle, rng.uniform(0.8, 1.1, n), rng.uniform(-0.12, 0.12, (n, 2)))
    cover = np.clip(_affine(masks / 255.0, theta, size), 0, 1)
    fg, bg = contrasting_pair(rng, n, 0.4, light_on_dark=True)
    tex = smooth_noise(rng, n, 1.8, size)[..., None]
    back = bg[:, None, None] * (0.7 + 0.6 * tex)
    img = back * (1 - cover[..., None]) + fg[:, None, None] * cover[..., None]
    return to_uint8(img, rng, noise=0.04)


def digits(rng: np.random.Generator, images: np.ndarray, mirror: np.ndarray, size: int = SIZE) -> np.ndarray:
    """8x8 handwritten digits ([n, 8, 8] in [0, 1]) upsampled, rotated, zoomed, optionally mirrored, coloured."""
    n = len(images)
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1)))
    theta = _rotation_theta(
        rng.uniform(-0.2, 0.2, n), rng.uniform(0.6, 0.85, n), rng.uniform(-0.15, 0.15, (n, 2)), mirror
    )
    cover = np.clip(_affine(padded, theta, size), 0, 1)
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


# -- the VTAB-like extension: seven more families (the gpu scale's 19 tasks) -------------------------------------
def _box_sd(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, hh: float, hw: float) -> np.ndarray:
    """Signed distance (approximate outside the corners) to an axis-aligned box."""
    return np.maximum(np.abs(yy - cy) - hh, np.abs(xx - cx) - hw)


def _segments_sd(yy: np.ndarray, xx: np.ndarray, p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
    """Distance from every pixel to the nearest of the segments ``p0[k] -> p1[k]`` ([k, 2] as (y, x))."""
    pix = np.stack([yy.ravel(), xx.ravel()], 1)[:, None]  # [P, 1, 2]
    d = (p1 - p0)[None]
    t = np.clip(((pix - p0[None]) * d).sum(-1) / np.maximum((d * d).sum(-1), 1e-9), 0, 1)
    return np.sqrt(((pix - (p0[None] + t[..., None] * d)) ** 2).sum(-1)).min(1).reshape(yy.shape)


def _cells(yy: np.ndarray, xx: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distances to the nearest and second-nearest of ``pts`` ([k, 2] as (y, x)): Voronoi cells and edges."""
    d = np.sqrt((yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2)
    d.sort(axis=-1)
    return d[..., 0], d[..., 1]


# SVHN-like printed characters --------------------------------------------------------------------------------
def printed_characters(
    rng: np.random.Generator, glyphs: np.ndarray, label: np.ndarray, size: int = SIZE
) -> np.ndarray:
    """House-number-like crops (SVHN's cropped digits): the character ``label[i]`` (an index into the
    typeface masks ``glyphs`` [fonts, chars, h, w]) centred, flanked by partly visible neighbours in the same
    typeface, coloured on a cluttered wall; random typeface, size, slant and position."""
    n = len(label)
    fonts, chars = glyphs.shape[:2]
    font = rng.integers(fonts, size=n)
    zoom = rng.uniform(0.8, 1.25, n)
    angle = rng.uniform(-0.15, 0.15, n)
    centre = rng.uniform(-0.1, 0.1, (n, 2))
    advance = zoom * rng.uniform(0.85, 1.1, n)  # glyph widths are about 0.8 of the canvas at zoom 1
    cover = np.zeros((n, size, size))
    for offset, char, present in (
        (0.0, label, np.ones(n, bool)),
        (-1.0, rng.integers(chars, size=n), rng.uniform(size=n) < 0.75),
        (1.0, rng.integers(chars, size=n), rng.uniform(size=n) < 0.75),
    ):
        shift = centre + np.stack([offset * advance, np.zeros(n)], 1)
        drawn = _affine(glyphs[font, char], _rotation_theta(angle, zoom, shift), size)
        cover = np.maximum(cover, np.clip(drawn, 0, 1) * present[:, None, None])
    fg, bg = contrasting_pair(rng, n, 0.3)
    yy, xx = grid(size)
    wall = bg[:, None, None] * (0.75 + 0.5 * smooth_noise(rng, n, 1.6, size)[..., None])
    for i in range(n):  # clutter: a plate's edge or a frame behind the characters
        for _ in range(int(rng.integers(0, 3))):
            cy, cx = rng.uniform(-1, 1, 2)
            box = _box_sd(yy, xx, cy, cx, rng.uniform(0.2, 0.9), rng.uniform(0.2, 0.9))
            edge = soft(np.abs(box) - rng.uniform(0.02, 0.06), size)
            _paint(wall[i], 0.7 * edge, random_colors(rng, 1)[0])
    img = wall * (1 - cover[..., None]) + fg[:, None, None] * cover[..., None]
    return to_uint8(img, rng, noise=0.04)


# DTD-like textures -----------------------------------------------------------------------------------------------
TEXTURES = (
    "zigzagged", "honeycombed", "woven", "marbled", "cracked", "bubbly",
    "spiralled", "blotchy", "scaly", "fibrous", "sprinkled", "stratified",
)  # fmt: skip


def textures(rng: np.random.Generator, kind: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Describable textures (DTD's kinds that upstream's gratings, lattices and palettes do not show), each
    at a random scale, orientation and colouring; drawn at 2x and averaged down."""
    n = len(kind)
    big = 2 * size
    yy, xx = grid(big)
    out = np.empty((n, big, big, 3))
    fgs, bgs = contrasting_pair(rng, n, 0.3)
    for i, k in enumerate(kind):
        fg, bg = fgs[i], bgs[i]
        th = rng.uniform(0, np.pi)
        u = xx * np.cos(th) + yy * np.sin(th)
        v = -xx * np.sin(th) + yy * np.cos(th)
        f = rng.uniform(0.8, 1.25)  # scale
        if k == 0:  # zigzagged: chevron stripes
            period = 0.45 / f
            tri = 2 * np.abs(u / period - np.floor(u / period + 0.5))
            w = (v + rng.uniform(0.15, 0.3) / f * tri) / (0.3 / f)
            pat = soft((np.abs(w - np.floor(w) - 0.5) - 0.25) * 0.3 / f, big)
        elif k == 1:  # honeycombed: regular hexagonal cell walls
            a = 0.32 / f  # distance between neighbouring cell centres
            spacing = np.array([a, a * np.sqrt(3)])
            pu, pv = u + rng.uniform(0, a), v + rng.uniform(0, a)
            local = []
            for off in (np.zeros(2), spacing / 2):  # a triangular lattice as two rectangular ones
                du = pu - off[0] - np.round((pu - off[0]) / spacing[0]) * spacing[0]
                dv = pv - off[1] - np.round((pv - off[1]) / spacing[1]) * spacing[1]
                local.append((du, dv))
            near = local[0][0] ** 2 + local[0][1] ** 2 < local[1][0] ** 2 + local[1][1] ** 2
            du, dv = np.where(near, local[0][0], local[1][0]), np.where(near, local[0][1], local[1][1])
            hexr = np.max([np.abs(du * np.cos(t) + dv * np.sin(t)) for t in (0, np.pi / 3, 2 * np.pi / 3)], 0)
            pat = soft(a / 2 - hexr - 0.025 / f, big)
        elif k == 2:  # woven: basket weave, threads alternating direction in a checkerboard of cells
            p = 0.3 / f
            parity = (np.floor(u / p) + np.floor(v / p)) % 2
            thread = np.where(parity == 0, np.sin(np.pi * 3 * v / p), np.sin(np.pi * 3 * u / p))
            pat = 0.5 + 0.5 * thread
        elif k == 3:  # marbled: veins bent by turbulence
            turb = smooth_noise(rng, 1, 2.2, big)[0]
            pat = np.abs(np.sin(np.pi * (u * 2.5 * f + rng.uniform(3, 6) * turb))) ** 0.35
        elif k == 4:  # cracked: irregular cells with thin dark cracks
            pts = rng.uniform(-1.1, 1.1, (int(rng.integers(14, 30) * f**2), 2))
            d1, d2 = _cells(yy, xx, pts)
            pat = 1 - soft((d2 - d1) / 2 - 0.015, big)
        elif k == 5:  # bubbly: overlapping circle outlines of many sizes
            pat = np.zeros_like(xx)
            for _ in range(int(rng.integers(8, 16))):
                cy, cx = rng.uniform(-1.1, 1.1, 2)
                r = rng.uniform(0.08, 0.35) / f
                ring = soft(np.abs(np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) - r) - 0.03, big)
                pat = np.maximum(pat, ring)
        elif k == 6:  # spiralled: an Archimedean spiral around a point in view
            cy, cx = rng.uniform(-0.5, 0.5, 2)
            r = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
            ang = np.arctan2(yy - cy, xx - cx) * rng.choice([-1, 1])
            pat = 0.5 + 0.5 * np.sin(ang * int(rng.integers(1, 3)) + r * 14 * f)
        elif k == 7:  # blotchy: irregular blobs
            field = smooth_noise(rng, 1, 2.8, big)[0]
            pat = soft((field - rng.uniform(0.45, 0.6)) * -0.3, big)
        elif k == 8:  # scaly: rows of overlapping round scales
            p = 0.3 / f
            row = np.floor(v / p)
            cu = (u / p + 0.5 * (row % 2)) % 1 - 0.5
            cv = v / p - row
            pat = np.clip(np.sqrt(cu**2 + cv**2) / 0.6, 0, 1) ** 2  # each scale darkens to its rim
        elif k == 9:  # fibrous: long thin strands along one direction (noise smoothed along it only)
            fy, fx = np.meshgrid(np.fft.fftfreq(big), np.fft.fftfreq(big), indexing="ij")
            along = fx * np.cos(th) + fy * np.sin(th)
            spectrum = np.fft.fft2(rng.normal(size=(big, big))) * np.exp(-((along / 0.012) ** 2))
            field = np.fft.ifft2(spectrum * (np.sqrt(fx**2 + fy**2) < 0.25 * f)).real
            field = field / max(field.std(), 1e-8)
            pat = np.clip(0.5 + 0.6 * field, 0, 1) ** 2
        elif k == 10:  # sprinkled: small specks of many colours on a plain ground
            img = np.repeat(np.repeat(bg[None, None], big, 0), big, 1)
            m = int(rng.integers(25, 50))
            mid = rng.uniform(-1, 1, (m, 2))
            a = rng.uniform(0, np.pi, m)
            half = rng.uniform(0.02, 0.06, m)[:, None] * np.stack([np.sin(a), np.cos(a)], 1)
            colors = random_colors(rng, m)
            for j in range(m):  # each speck only touches a few pixels: paint it in its own window
                lo = np.clip(((mid[j] - 0.13 + 1) * big / 2).astype(int), 0, big)
                hi = np.clip(((mid[j] + 0.13 + 1) * big / 2).astype(int) + 1, 0, big)
                win = (slice(lo[0], hi[0]), slice(lo[1], hi[1]))
                dist = _segments_sd(yy[win], xx[win], (mid[j] - half[j])[None], (mid[j] + half[j])[None])
                _paint(img[win], soft(dist - 0.025, big), colors[j])
            out[i] = img
            continue
        else:  # stratified: layers of uneven thickness with wavy boundaries, three colours
            warp = 0.15 * (smooth_noise(rng, 1, 3.0, big)[0] - 0.5)
            edges = np.cumsum(rng.uniform(0.08, 0.35, 16) / f) - 1.6
            layer = np.searchsorted(edges, v + warp)
            cols = np.stack([fg, bg, random_colors(rng, 1)[0]])[rng.integers(3, size=17)]
            out[i] = cols[layer] * (0.9 + 0.2 * smooth_noise(rng, 1, 1.5, big)[0][..., None])
            continue
        out[i] = bg[None, None] + pat[..., None] * (fg - bg)[None, None]
    out = out.reshape(n, size, 2, size, 2, 3).mean(axis=(2, 4))
    return to_uint8(out, rng, noise=0.04)


# Pets-like coated animals ----------------------------------------------------------------------------------------
COATS = ("plain", "spotted", "striped")


def coated_silhouettes(
    rng: np.random.Generator, masks: np.ndarray, coat: np.ndarray, size: int = SIZE
) -> np.ndarray:
    """Animal silhouettes ([n, 28, 28] uint8), upright and randomly mirrored, their coat plain, spotted or
    striped (a second colour), on textured backgrounds."""
    n = len(masks)
    theta = _rotation_theta(
        rng.uniform(-0.2, 0.2, n), rng.uniform(0.85, 1.15, n), rng.uniform(-0.1, 0.1, (n, 2)),
        rng.uniform(size=n) < 0.5,
    )  # fmt: skip
    cover = np.clip(_affine(masks / 255.0, theta, size), 0, 1)
    fg, bg = contrasting_pair(rng, n, 0.4, light_on_dark=True)
    mark = np.clip(fg * rng.uniform(0.2, 0.5, (n, 1)) + rng.uniform(-0.1, 0.1, (n, 3)), 0, 1)
    yy, xx = grid(size)
    pattern = np.zeros((n, size, size))
    for i, c in enumerate(coat):
        th = rng.uniform(-0.5, 0.5) + np.pi / 2  # spots and stripes: across the body, like a zebra's
        u = xx * np.cos(th) + yy * np.sin(th)
        v = -xx * np.sin(th) + yy * np.cos(th)
        if c == 1:
            p = rng.uniform(0.26, 0.34)
            jitter = rng.uniform(0, 1, 2)
            fu, fv = (u / p + jitter[0]) % 1 - 0.5, (v / p + jitter[1] + 0.5 * np.floor(u / p)) % 1 - 0.5
            pattern[i] = soft(np.sqrt(fu**2 + fv**2) * p - rng.uniform(0.07, 0.1), size)
        elif c == 2:
            p = rng.uniform(0.22, 0.3)
            w = u / p + 0.15 * np.sin(v * 5 + rng.uniform(0, 6)) + rng.uniform(0, 1)
            pattern[i] = soft((np.abs(w - np.floor(w) - 0.5) - 0.25) * p, size)
    coat_img = fg[:, None, None] + pattern[..., None] * (mark - fg)[:, None, None]
    tex = smooth_noise(rng, n, 1.8, size)[..., None]
    back = bg[:, None, None] * (0.7 + 0.6 * tex)
    img = back * (1 - cover[..., None]) + coat_img * cover[..., None]
    return to_uint8(img, rng, noise=0.04)


# RESISC-like aerial scenes ---------------------------------------------------------------------------------------
AERIAL_SCENES = (
    "airport", "baseball_diamond", "beach", "bridge", "circular_farmland", "cloud",
    "desert", "parking_lot", "roundabout", "ship", "storage_tanks", "tennis_court",
)  # fmt: skip


def aerial_scenes(rng: np.random.Generator, cls: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Aerial scene classes of RESISC-45 that the EuroSAT-like land cover task does not have, seen from
    above at a random orientation over varied terrain."""
    n = len(cls)
    yy, xx = grid(size)
    out = np.empty((n, size, size, 3))
    green, brown = np.array([0.28, 0.45, 0.22]), np.array([0.52, 0.45, 0.33])
    grey, white = np.array([0.5, 0.5, 0.5]), np.array([0.92, 0.92, 0.9])
    water = np.array([0.12, 0.26, 0.42])
    sand = np.array([0.82, 0.72, 0.5])
    for i, c in enumerate(cls):
        jitter = rng.normal(0, 0.04, 3)
        tex = smooth_noise(rng, 1, 2.0, size)[0][..., None]
        land = (green + (brown - green) * rng.uniform(0, 1) + jitter)[None, None] * (0.8 + 0.4 * tex)
        img = land.copy()
        th = rng.uniform(0, np.pi)
        u = xx * np.cos(th) + yy * np.sin(th)
        v = -xx * np.sin(th) + yy * np.cos(th)
        _aerial_clutter(rng, img, yy, xx, size)  # what many scenes share: roads, houses, trees, ponds
        if c == 0:  # airport: a runway with centre-line dashes beside an apron
            off = rng.uniform(-0.4, 0.4)
            _paint(img, soft(np.abs(v - off - 0.45) - rng.uniform(0.15, 0.3), size), grey * 1.1 + jitter)
            _paint(img, soft(np.abs(v - off) - 0.1, size), np.full(3, 0.35) + jitter)
            dash = soft(np.maximum(np.abs(v - off) - 0.015, np.abs((u * 4) % 1 - 0.5) * 0.25 - 0.06), size)
            _paint(img, dash, white)
        elif c == 1:  # baseball diamond: a sand infield and a grass outfield fanning out from home plate
            du, dv = u - rng.uniform(-0.2, 0.2), v - rng.uniform(-0.75, -0.35)
            r = rng.uniform(0.3, 0.42)
            fan = np.maximum(np.sqrt(du**2 + dv**2) - 2.6 * r, (np.abs(du) - dv) / np.sqrt(2))
            _paint(img, soft(fan, size), green * 1.25 + jitter)
            _paint(img, soft((np.abs(du) + np.abs(dv - r)) / np.sqrt(2) - 0.78 * r, size), sand + jitter)
            _paint(
                img, soft((np.abs(du) + np.abs(dv - r)) / np.sqrt(2) - 0.45 * r, size), green * 1.25 + jitter
            )
        elif c == 2:  # beach: land, a sand strip, surf and sea
            shore = v + 0.12 * np.sin(u * rng.uniform(2, 5) + rng.uniform(0, 6)) - rng.uniform(-0.3, 0.3)
            width = rng.uniform(0.15, 0.35)
            _paint(img, soft(-shore, size), sand + jitter)
            _paint(img, soft(-(shore + width), size), water + jitter)
            _paint(img, 0.8 * soft(np.abs(shore + width) - 0.03, size), white)
        elif c == 3:  # bridge: a road across a river
            img = land.copy()
            bend = v - 0.15 * np.sin(u * rng.uniform(1, 3) + rng.uniform(0, 6))
            _paint(img, soft(np.abs(bend) - rng.uniform(0.2, 0.35), size), water + jitter)
            _paint(
                img, soft(np.abs(u - rng.uniform(-0.4, 0.4)) - rng.uniform(0.05, 0.09), size), grey + jitter
            )
        elif c == 4:  # circular farmland: centre-pivot circles of different crops
            img = (brown + jitter)[None, None] * (0.85 + 0.3 * tex)
            r = rng.uniform(0.35, 0.55)
            off = rng.uniform(-1, 1, 2)
            for gy in np.arange(-3, 4) * 2 * r:
                for gx in np.arange(-3, 4) * 2 * r:
                    cy, cx = gy + off[0] * r, gx + off[1] * r
                    if abs(cy) > 1 + r or abs(cx) > 1 + r or rng.uniform() < 0.2:
                        continue
                    crop = green + (brown - green) * rng.uniform(0, 0.7) + rng.normal(0, 0.05, 3)
                    _paint(img, soft(np.sqrt((u - cx) ** 2 + (v - cy) ** 2) - 0.92 * r, size), crop)
        elif c == 5:  # cloud: white cover over most of the scene
            field = smooth_noise(rng, 1, 2.4, size)[0]
            cover = np.clip((field - rng.uniform(0.15, 0.4)) * 3, 0, 1)
            img = (
                img * (1 - cover[..., None]) + (white * rng.uniform(0.85, 1.0))[None, None] * cover[..., None]
            )
        elif c == 6:  # desert: dune ripples in sand
            warp = smooth_noise(rng, 1, 2.5, size)[0]
            ripple = 0.5 + 0.5 * np.sin(u * rng.uniform(8, 14) + 4 * warp)
            img = (sand * rng.uniform(0.8, 1.05) + jitter)[None, None] * (0.8 + 0.25 * ripple[..., None])
        elif c == 7:  # parking lot: rows of cars on asphalt
            img = (grey * rng.uniform(0.7, 1.0) + jitter)[None, None] * (0.95 + 0.1 * tex)
            pu, pv = rng.uniform(0.14, 0.2), rng.uniform(0.3, 0.4)
            cu, cv = (u / pu) % 1 - 0.5, (v / pv) % 1 - 0.5
            cars = soft(np.maximum(np.abs(cu) * pu - 0.3 * pu, np.abs(cv) * pv - 0.3 * pv), size)
            full = rng.uniform(size=(64, 64)) < rng.uniform(0.5, 0.9)
            slot = full[(np.floor(u / pu) % 64).astype(int), (np.floor(v / pv) % 64).astype(int)]
            colors = rng.uniform(0.1, 0.9, (64, 3))[
                (np.floor(u / pu) * 7 + np.floor(v / pv)).astype(int) % 64
            ]
            img = img * (1 - (cars * slot)[..., None]) + colors * (cars * slot)[..., None]
        elif c == 8:  # roundabout: roads meeting at a ring with a green island
            cy, cx = rng.uniform(-0.3, 0.3, 2)
            r = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
            for a in rng.uniform(0, 2 * np.pi) + np.arange(int(rng.integers(3, 5))) * np.pi / 2:
                along = (xx - cx) * np.cos(a) + (yy - cy) * np.sin(a)
                across = -(xx - cx) * np.sin(a) + (yy - cy) * np.cos(a)
                _paint(img, soft(np.maximum(np.abs(across) - 0.07, -along), size), grey + jitter)
            ring = rng.uniform(0.25, 0.4)
            _paint(img, soft(np.abs(r - ring) - 0.08, size), grey + jitter)
            _paint(img, soft(r - (ring - 0.08), size), green * 1.2 + jitter)
        elif c == 9:  # ship: a hull and its wake on open water, sometimes off a shore
            coast = soft(v - rng.uniform(0.5, 1.6), size)[..., None]  # water up to a shore, if in view
            img = img * (1 - coast) + (water + jitter)[None, None] * (0.85 + 0.3 * tex) * coast
            cv = rng.uniform(-0.4, 0.4)
            cu = rng.uniform(-0.3, 0.3)
            length, beam = rng.uniform(0.25, 0.45), rng.uniform(0.06, 0.1)
            hull = np.sqrt(((u - cu) / length) ** 2 + ((v - cv) / beam) ** 2) - 1
            behind = np.clip(cu - u, 0, None)
            wake = (u < cu) * soft(np.abs(v - cv) - 0.12 * behind - 0.02, size) * np.exp(-behind / 0.6)
            _paint(img, 0.6 * wake, white)
            _paint(img, soft(hull * beam, size), white * rng.uniform(0.7, 1.0))
        elif c == 10:  # storage tanks: white discs with shadows on industrial ground
            img = (grey * rng.uniform(0.8, 1.1) + brown * 0.2 + jitter)[None, None] * (0.9 + 0.2 * tex)
            sy, sx = rng.normal(0, 0.04, 2) + 0.05
            for _ in range(int(rng.integers(2, 7))):
                cy, cx = rng.uniform(-0.75, 0.75, 2)
                r = rng.uniform(0.12, 0.25)
                _paint(img, 0.6 * soft(np.sqrt((yy - cy - sy) ** 2 + (xx - cx - sx) ** 2) - r, size),
                       np.zeros(3))  # fmt: skip
                _paint(
                    img, soft(np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) - r, size), white * rng.uniform(0.8, 1)
                )
        else:  # tennis courts: coloured rectangles with white lines
            surface = np.array([[0.2, 0.5, 0.3], [0.2, 0.35, 0.6], [0.7, 0.35, 0.2]])[rng.integers(3)]
            k = int(rng.integers(1, 4))
            hw, hh = rng.uniform(0.22, 0.3), rng.uniform(0.45, 0.6)
            start = -(k - 1) * hw
            for j in range(k):
                cx = start + 2 * j * hw + rng.uniform(-0.03, 0.03)
                court = _box_sd(v, u, 0.0, cx, hh, hw * 0.95)
                _paint(img, soft(court, size), surface + jitter)
                inner = _box_sd(v, u, 0.0, cx, hh * 0.8, hw * 0.7)
                lines = np.minimum(np.abs(inner), np.maximum(np.abs(v), np.abs(u - cx) - hw * 0.7))
                _paint(img, 0.9 * soft(lines - 0.012, size) * (court < 0), white)
        gain = rng.uniform(0.85, 1.15, 3) * rng.uniform(0.8, 1.15)  # sensor, season and haze
        grey_level = img.mean(-1, keepdims=True)
        out[i] = (grey_level + (img - grey_level) * rng.uniform(0.6, 1.2)) * gain
    return to_uint8(out, rng, noise=0.03)


def _aerial_clutter(
    rng: np.random.Generator, img: np.ndarray, yy: np.ndarray, xx: np.ndarray, size: int
) -> None:
    """Paint what many aerial scenes share, in place: a road, houses, tree clumps, a pond."""
    if rng.uniform() < 0.5:
        a = rng.uniform(0, np.pi)
        across = -xx * np.sin(a) + yy * np.cos(a) - rng.uniform(-0.9, 0.9)
        _paint(img, soft(np.abs(across) - rng.uniform(0.03, 0.06), size), np.full(3, rng.uniform(0.4, 0.6)))
    for _ in range(int(rng.integers(0, 5))):
        cy, cx = rng.uniform(-1, 1, 2)
        roof = np.array([0.6, 0.3, 0.25]) * rng.uniform(0.7, 1.3) if rng.uniform() < 0.6 else np.full(3, 0.7)
        _paint(
            img, soft(_box_sd(yy, xx, cy, cx, rng.uniform(0.04, 0.09), rng.uniform(0.04, 0.09)), size), roof
        )
    for _ in range(int(rng.integers(0, 6))):
        cy, cx = rng.uniform(-1, 1, 2)
        tree = soft(np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) - rng.uniform(0.04, 0.1), size)
        _paint(img, tree, np.array([0.12, 0.28, 0.1]) * rng.uniform(0.7, 1.3))
    if rng.uniform() < 0.25:
        cy, cx = rng.uniform(-0.9, 0.9, 2)
        pond = (
            np.sqrt(((yy - cy) / rng.uniform(0.1, 0.25)) ** 2 + ((xx - cx) / rng.uniform(0.1, 0.25)) ** 2) - 1
        )
        _paint(img, soft(pond * 0.15, size), np.array([0.12, 0.26, 0.42]))


# smallNORB-like toys ----------------------------------------------------------------------------------------------
TOY_CATEGORIES = ("animal", "human", "airplane", "truck", "car")
TOY_AZIMUTHS = np.arange(0, 360, 20)  # degrees, smallNORB's 18
TOY_ELEVATIONS = np.arange(30, 71, 5)  # degrees, smallNORB's 9
# smallNORB's categories as unions of ellipsoids, in an object frame with x forward, y up and z to the side:
# rows of (centre x, y, z, radii x, y, z).
_TOY_PARTS: dict[str, list[tuple[float, ...]]] = {
    "animal": [(0, .55, 0, .6, .25, .22), (.72, .85, 0, .22, .14, .13), (.5, .72, 0, .15, .1, .09),
               (.42, .25, .14, .07, .27, .07), (.42, .25, -.14, .07, .27, .07), (-.42, .25, .14, .07, .27, .07),
               (-.42, .25, -.14, .07, .27, .07), (-.72, .6, 0, .22, .04, .04)],
    "human": [(0, 1.0, 0, .14, .33, .24), (.02, 1.5, 0, .13, .15, .12), (.14, 1.5, 0, .05, .04, .04),
              (0, .38, .1, .08, .38, .08), (0, .38, -.1, .08, .38, .08), (.3, 1.15, .3, .3, .06, .06),
              (0, 1.0, -.33, .06, .3, .06)],
    "airplane": [(0, .5, 0, 1.0, .14, .14), (.12, .48, 0, .28, .04, .95), (-.85, .78, 0, .17, .26, .03),
                 (-.85, .52, 0, .12, .03, .35), (.9, .52, 0, .16, .09, .09)],
    "truck": [(.62, .58, 0, .26, .42, .38), (-.28, .66, 0, .66, .48, .42), (.6, .2, .36, .17, .17, .07),
              (.6, .2, -.36, .17, .17, .07), (-.55, .2, .38, .17, .17, .07), (-.55, .2, -.38, .17, .17, .07),
              (-.1, .2, .38, .17, .17, .07), (-.1, .2, -.38, .17, .17, .07)],
    "car": [(0, .36, 0, .92, .24, .4), (-.18, .62, 0, .45, .2, .34), (.55, .18, .36, .17, .17, .07),
            (.55, .18, -.36, .17, .17, .07), (-.55, .18, .36, .17, .17, .07), (-.55, .18, -.36, .17, .17, .07)],
}  # fmt: skip


def toy_instances(per_category: int = 10, seed: int = 4321) -> np.ndarray:
    """The toys ``[categories, per_category, parts, 7]`` (centre, radii, yaw; unused parts have radius 0):
    each category's parts with jittered positions, sizes and yaws, scaled to fit the unit sphere. Fixed for
    every benchmark seed, as smallNORB's 50 toys are."""
    rng = np.random.default_rng(seed)
    parts = max(len(p) for p in _TOY_PARTS.values())
    out = np.zeros((len(TOY_CATEGORIES), per_category, parts, 7))
    for c, name in enumerate(TOY_CATEGORIES):
        base = np.array(_TOY_PARTS[name])
        for k in range(per_category):
            centre = base[:, :3] + rng.normal(0, 0.05, (len(base), 3)) * base[:, 3:].max(1, keepdims=True)
            radii = base[:, 3:] * rng.uniform(0.75, 1.25, (len(base), 3))
            lo, hi = (centre - radii).min(0), (centre + radii).max(0)
            centre = centre - (lo + hi) / 2
            scale = 1.0 / np.sqrt((((hi - lo) / 2) ** 2).sum())
            out[c, k, : len(base), :3] = centre * scale
            out[c, k, : len(base), 3:6] = radii * scale
            out[c, k, : len(base), 6] = rng.normal(0, 0.15, len(base))
    return out


# six lamp directions in the camera frame (right, up, towards the camera), as smallNORB's lightings
TOY_LIGHTS = np.array([[-.5, .6, .6], [.5, .6, .6], [0, .9, .4], [0, .2, 1], [-.8, .3, .5], [.8, .3, .5]])  # fmt: skip


def _part_frame(vec: np.ndarray, yaw_c: np.ndarray, yaw_s: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """World vectors ``vec`` ([m, 3] or [m, K, 3]) in each part's frame, scaled to its unit sphere: [m, K, 3]."""
    x, y, z = vec[..., 0], vec[..., 1], vec[..., 2]
    return np.stack([yaw_c * x + yaw_s * z, y + 0 * yaw_c, -yaw_s * x + yaw_c * z], -1) / radii


def _take_part(k: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Per pixel, part ``k`` [m, P] of the per-part vectors ``v`` [m, K, 3]: [m, P, 3]."""
    return np.take_along_axis(v, k[..., None], 1)


def toys(
    rng: np.random.Generator, parts: np.ndarray, azimuth_deg: np.ndarray, elevation_deg: np.ndarray,
    size: int = SIZE, chunk: int = 32,
) -> np.ndarray:  # fmt: skip
    """Grey toys (``parts`` [n, parts, 7], from :func:`toy_instances`) ray-cast in orthographic view from
    ``azimuth_deg`` around and ``elevation_deg`` above, under one of six lamps, at 2x and averaged down, on
    a plain background (smallNORB's images, in colour channels)."""
    n = len(parts)
    big = 2 * size
    py, px = grid(big)
    px, py = px.ravel(), -py.ravel()  # screen right, screen up
    floor = (parts[..., 1] - parts[..., 4]).min(1, initial=0.0, where=parts[..., 3] > 0)
    table = np.zeros((n, 1, 7))
    table[:, 0, 1], table[:, 0, 3:6] = (
        floor - 0.03,
        (0.9, 0.03, 0.9),
    )  # a turntable: a flat disc below the toy
    parts = np.concatenate([parts, table], 1)
    az, el = (
        np.deg2rad(azimuth_deg + rng.uniform(-2, 2, n)),
        np.deg2rad(elevation_deg + rng.uniform(-1, 1, n)),
    )
    back = np.stack([np.cos(el) * np.cos(az), np.sin(el), np.cos(el) * np.sin(az)], 1)  # towards the camera
    right = np.stack([np.sin(az), np.zeros(n), -np.cos(az)], 1)
    up = np.cross(back, right)
    view = rng.uniform(1.05, 1.25, n)  # half-width of the view: the toy's apparent size
    lamp = TOY_LIGHTS[rng.integers(len(TOY_LIGHTS), size=n)]
    light = lamp[:, :1] * right + lamp[:, 1:2] * up + lamp[:, 2:] * back
    light /= np.linalg.norm(light, axis=1, keepdims=True)
    albedo = rng.uniform(0.55, 0.9, n)
    backdrop = rng.uniform(0.15, 0.35, n)
    shift = rng.uniform(-0.06, 0.06, (n, 2))
    out = np.empty((n, big * big))
    for s in range(0, n, chunk):
        i = slice(s, min(n, s + chunk))
        p = parts[i]
        valid = p[..., 3] > 0
        radii = np.where(valid[..., None], p[..., 3:6], 1.0)
        yaw_c, yaw_s = np.cos(p[..., 6]), np.sin(p[..., 6])

        # the ray through screen point (sx, sy) starts at sx*a1 + sy*a2 + a0 and runs along d, part frame
        a1, a2 = (
            _part_frame(right[i, None], yaw_c, yaw_s, radii),
            _part_frame(up[i, None], yaw_c, yaw_s, radii),
        )
        d = _part_frame(-back[i, None], yaw_c, yaw_s, radii)
        a0 = _part_frame(3 * back[i, None] - p[..., :3], yaw_c, yaw_s, radii)
        sx = ((px[None] - shift[i, :1]) * view[i, None])[:, None]  # [m, 1, P]
        sy = ((py[None] - shift[i, 1:]) * view[i, None])[:, None]

        def dot(u: np.ndarray, w: np.ndarray) -> np.ndarray:
            return (u * w).sum(-1)[..., None]

        a = dot(d, d)
        b = 2 * (sx * dot(a1, d) + sy * dot(a2, d) + dot(a0, d))
        c = (sx * sx * dot(a1, a1) + sy * sy * dot(a2, a2) + 2 * sx * sy * dot(a1, a2)
             + 2 * sx * dot(a1, a0) + 2 * sy * dot(a2, a0) + dot(a0, a0) - 1)  # fmt: skip
        disc = b * b - 4 * a * c
        t = np.where((disc > 0) & valid[..., None], (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), np.inf)
        k = t.argmin(1)  # the nearest part along each pixel's ray, [m, P]
        tk = np.take_along_axis(t, k[:, None], 1)[:, 0]
        hit = np.isfinite(tk)

        pick = partial(_take_part, k)  # [m, K, 3] -> the hit part's, [m, P, 3]
        pos = sx[:, 0, :, None] * pick(a1) + sy[:, 0, :, None] * pick(a2) + pick(a0)
        pos = pos + np.where(hit, tk, 0)[..., None] * pick(d)  # on the unit sphere, in the part's frame
        nl = pos / pick(radii)  # the ellipsoid's normal, in the part's rotated frame
        kc, ks = np.take_along_axis(yaw_c, k, 1), np.take_along_axis(yaw_s, k, 1)
        normal = np.stack(
            [kc * nl[..., 0] - ks * nl[..., 2], nl[..., 1], ks * nl[..., 0] + kc * nl[..., 2]], -1
        )
        normal /= np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-9)
        shade = 0.2 + 0.8 * np.clip((normal * light[i, None]).sum(-1), 0, 1)
        out[i] = np.where(hit, albedo[i, None] * shade, backdrop[i, None])
    img = out.reshape(n, size, 2, size, 2).mean(axis=(2, 4))
    return to_uint8(np.repeat(img[..., None], 3, axis=3), rng, noise=0.02)


# KITTI-like road scenes ---------------------------------------------------------------------------------------
def _draw_thing(
    img: np.ndarray, sy: np.ndarray, sx: np.ndarray, kind: str, bottom: float, top: float, cx: float,
    hw: float, tall: float, colour: np.ndarray, big: int,
) -> None:  # fmt: skip
    """Paint one roadside thing or vehicle, standing on the ground at screen height ``bottom``."""
    mid, span = (bottom + top) / 2, top - bottom
    if kind == "tree":
        _paint(
            img,
            soft(_box_sd(sy, sx, (bottom + mid) / 2, cx, span / 4, hw * 0.12), big),
            np.array([0.3, 0.22, 0.15]),
        )
        crown = np.sqrt(((sy - (mid + top) / 2) / span * 4) ** 2 + ((sx - cx) / hw) ** 2) - 1
        _paint(img, soft(crown * hw, big), colour)
        return
    _paint(img, soft(_box_sd(sy, sx, mid, cx, span / 2, hw), big), colour)
    if kind == "building":  # rows of windows
        win = (np.abs(((sy - bottom) / span * 4) % 1 - 0.5) < 0.2) & (np.abs(sx - cx) < hw * 0.85)
        _paint(img, 0.5 * win * (sy < top) * (sy > bottom), np.zeros(3))
    elif kind == "vehicle":  # rear window (not on trucks), lights and wheels
        glass = _box_sd(sy, sx, bottom + 0.75 * span, cx, 0.12 * span, 0.75 * hw)
        _paint(img, soft(glass, big) * (tall < 3), np.full(3, 0.12))
        for side in (-1, 1):
            lamp = _box_sd(sy, sx, bottom + 0.45 * span, cx + side * 0.8 * hw, 0.06 * span, 0.12 * hw)
            _paint(img, soft(lamp, big), np.array([0.8, 0.1, 0.1]))
            wheel = _box_sd(sy, sx, bottom + 0.08 * span, cx + side * 0.7 * hw, 0.1 * span, 0.15 * hw)
            _paint(img, soft(wheel, big), np.full(3, 0.05))


ROAD_DISTANCE_BINS = (4.0, 8.0, 20.0, 45.0)  # metres: VTAB's kitti thresholds 8 and 20, then "no vehicle"
_VEHICLES = np.array([[1.8, 1.5], [2.0, 2.1], [2.5, 3.2]])  # width, height (m): car, van, truck


def road_scenes(
    rng: np.random.Generator, nearest_m: np.ndarray, size: int = SIZE, focal: float = 2.75
) -> np.ndarray:
    """Driving scenes seen from a car's roof camera (1.65 m up, about 40 degrees wide, pitch jittered): a road
    that may bend, lane marks, buildings, trees and pedestrians by the road, and vehicles (cars, vans, trucks)
    of which the nearest stands ``nearest_m[i]`` metres ahead (``inf``: none); drawn at 2x and averaged."""
    n = len(nearest_m)
    big = 2 * size
    yy, xx = grid(big)
    sy, sx = -yy, xx  # screen up, screen right
    height = 1.65
    out = np.empty((n, big, big, 3))
    for i in range(n):
        horizon = rng.uniform(-0.05, 0.2)
        bend = rng.uniform(-0.004, 0.004)
        lanes = int(rng.integers(2, 4))
        half_road = lanes * 3.5 / 2
        cam_x = rng.uniform(-half_road + 1.5, half_road - 1.5)  # the camera car's place across the road

        sky = np.array([0.55, 0.65, 0.8]) * rng.uniform(0.7, 1.1) + rng.normal(0, 0.04, 3)
        img = np.where(
            (sy > horizon)[..., None], sky * (1 - 0.25 * np.clip(sy - horizon, 0, 1))[..., None], 0.0
        )
        below = sy < horizon - 1e-3
        z = np.where(below, focal * height / np.maximum(horizon - sy, 1e-3), 1e3)
        across = np.where(below, sx * z / focal + cam_x - bend * z**2, 0)  # metres from the road's centre
        verge = np.array([0.35, 0.45, 0.25]) + rng.normal(0, 0.05, 3)
        img = np.where(
            below[..., None], verge * (0.85 + 0.15 * smooth_noise(rng, 1, 2, big)[0][..., None]), img
        )
        asphalt = np.full(3, rng.uniform(0.28, 0.42))
        _paint(img, below * soft((np.abs(across) - half_road) * focal / z, big), asphalt)
        phase = rng.uniform(0, 9)
        for k in range(1, lanes):
            mark = np.abs(across + half_road - 3.5 * k) - 0.08
            dashed = ((z + phase) % 9 < 3) & below & (z < 60)
            _paint(img, dashed * 0.8 * soft(mark * focal / z, big), np.full(3, 0.9))
        things = []  # (depth, kind, lateral, width, height, colour)
        for _ in range(int(rng.integers(4, 10))):  # buildings and trees beside the road
            side = rng.choice([-1, 1])
            zz = rng.uniform(8, 70)
            if rng.uniform() < 0.5:
                things.append((zz, "building", side * (half_road + rng.uniform(3, 8)), rng.uniform(4, 12),
                               rng.uniform(3, 12), rng.uniform(0.3, 0.8, 3)))  # fmt: skip
            else:
                things.append((zz, "tree", side * (half_road + rng.uniform(1.5, 5)), rng.uniform(2, 4),
                               rng.uniform(4, 8), np.array([0.15, 0.35, 0.12]) * rng.uniform(0.7, 1.3)))  # fmt: skip
        for _ in range(int(rng.integers(0, 4))):  # pedestrians: near things that are not vehicles
            things.append((rng.uniform(4, 30), "person", rng.choice([-1, 1]) * (half_road + rng.uniform(0.3, 2)),
                           0.55, rng.uniform(1.5, 1.9), rng.uniform(0.1, 0.8, 3)))  # fmt: skip
        if np.isfinite(nearest_m[i]):
            zn = nearest_m[i]
            reach = 0.8 * zn / focal  # stay in view
            lane_x = np.clip(cam_x + rng.uniform(-reach, reach), -half_road + 1, half_road - 1)
            kind = int(rng.choice(3, p=[0.7, 0.2, 0.1]))
            things.append((zn, "vehicle", lane_x - bend * zn**2, *_VEHICLES[kind], rng.uniform(0.05, 0.9, 3)))
            for _ in range(int(rng.integers(0, 4))):  # others, farther away
                zz = rng.uniform(zn + 2, zn + 40)
                kind = int(rng.choice(3, p=[0.7, 0.2, 0.1]))
                lateral = rng.choice([-1, 1]) * rng.uniform(0, half_road + 1)
                things.append(
                    (zz, "vehicle", lateral - bend * zz**2, *_VEHICLES[kind], rng.uniform(0.05, 0.9, 3))
                )
        for zz, kind, lateral, width, tall, colour in sorted(things, key=lambda t: -t[0]):  # far first
            bottom, cx = (
                horizon - focal * height / zz,
                focal * (lateral + bend * zz**2 - cam_x) / zz,
            )  # on the ground
            hw, top = focal * width / (2 * zz), bottom + focal * tall / zz
            r0, r1 = ((1 - np.array([top, bottom])) * big / 2).astype(int) + np.array([-2, 3])
            c0, c1 = ((1 + np.array([cx - hw, cx + hw])) * big / 2).astype(int) + np.array([-2, 3])
            if r1 <= 0 or c1 <= 0 or r0 >= big or c0 >= big:
                continue
            win = (slice(max(r0, 0), r1), slice(max(c0, 0), c1))  # paint only where the thing is
            _draw_thing(img[win], sy[win], sx[win], kind, bottom, top, cx, hw, tall, colour, big)
        out[i] = img
    out = out.reshape(n, size, 2, size, 2, 3).mean(axis=(2, 4))
    return to_uint8(out, rng, noise=0.03)
