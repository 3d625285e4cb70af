"""Drawing primitives the procedural families share: pixel grids, soft edges from signed distances, colours,
smooth noise, affine resampling and distance fields of boxes, segments and Voronoi cells. Pure functions of
their inputs (randomness only through a passed ``numpy.random.Generator``)."""

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


def paint(img: np.ndarray, cover: np.ndarray, color: np.ndarray) -> None:
    img[:] = img * (1 - cover[..., None]) + cover[..., None] * color


def affine(src: np.ndarray, theta: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Resample [n, h, w] float sources through inverse affine maps ``theta`` [n, 2, 3] onto size x size."""
    s = torch.from_numpy(np.ascontiguousarray(src, dtype=np.float32))[:, None]
    t = torch.from_numpy(theta.astype(np.float32))
    g = F.affine_grid(t, [len(src), 1, size, size], align_corners=False)
    return F.grid_sample(s, g, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0].numpy()


def rotation_theta(angle: np.ndarray, scale: np.ndarray, shift: np.ndarray, mirror: np.ndarray | None = None):
    """Inverse maps for grid_sample: output -> source coordinates (rotate by angle, zoom by scale, shift)."""
    c, s = np.cos(angle), np.sin(angle)
    mx = np.where(mirror, -1.0, 1.0) if mirror is not None else np.ones_like(angle)
    theta = np.zeros((len(angle), 2, 3))
    theta[:, 0, 0], theta[:, 0, 1] = mx * c / scale, mx * -s / scale
    theta[:, 1, 0], theta[:, 1, 1] = s / scale, c / scale
    theta[:, :, 2] = -shift / scale[:, None]
    return theta


def box_sd(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, hh: float, hw: float) -> np.ndarray:
    """Signed distance (approximate outside the corners) to an axis-aligned box."""
    return np.maximum(np.abs(yy - cy) - hh, np.abs(xx - cx) - hw)


def segments_sd(yy: np.ndarray, xx: np.ndarray, p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
    """Distance from every pixel to the nearest of the segments ``p0[k] -> p1[k]`` ([k, 2] as (y, x))."""
    pix = np.stack([yy.ravel(), xx.ravel()], 1)[:, None]  # [P, 1, 2]
    d = (p1 - p0)[None]
    t = np.clip(((pix - p0[None]) * d).sum(-1) / np.maximum((d * d).sum(-1), 1e-9), 0, 1)
    return np.sqrt(((pix - (p0[None] + t[..., None] * d)) ** 2).sum(-1)).min(1).reshape(yy.shape)


def cells(yy: np.ndarray, xx: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distances to the nearest and second-nearest of ``pts`` ([k, 2] as (y, x)): Voronoi cells and edges."""
    d = np.sqrt((yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2)
    d.sort(axis=-1)
    return d[..., 0], d[..., 1]
