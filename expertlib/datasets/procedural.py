"""Image families rendered from a seed, and renderers for the packaged real images.

Every function takes a ``numpy.random.Generator`` and per-image factors and returns uint8 RGB images
``[n, size, size, 3]``; nothing is random outside the generator, so a seed fixes every pixel.

Procedural families follow their real counterparts: dSprites (Matthey et al. 2017: square/ellipse/heart,
6 scales, 40 orientations, 32x32 positions, white on black), CLEVR-like scenes (shaded spheres, cubes and
cylinders in perspective on a grey floor), EuroSAT-like land cover, PCam-like tissue, retinopathy-like
fundus crops, gratings, lattices, colour palettes and stroke glyphs (Omniglot-like).
"""

from __future__ import annotations

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
