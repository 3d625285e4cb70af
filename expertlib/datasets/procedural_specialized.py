"""VTAB's specialized group, rendered from a seed: EuroSAT-like land cover, PCam-like tissue, retinopathy-like
fundus crops and RESISC-like aerial scenes (uint8 RGB ``[n, size, size, 3]``, as :mod:`expertlib.datasets.procedural`)."""

from __future__ import annotations

import numpy as np

from expertlib.datasets.drawing import (
    SIZE,
    box_sd,
    grid,
    paint,
    smooth_noise,
    soft,
    to_uint8,
)

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
            paint(
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
                box = box_sd(yy, xx, cy, cx, h, w)
                paint(img, soft(box, size), np.full(3, rng.uniform(0.6, 0.9)))
        elif c == 5:  # pasture: smooth, light green
            tex = smooth_noise(rng, 1, 3.0, size)[0]
            img = (np.array([0.4, 0.58, 0.28]) + jitter)[None, None] * (0.9 + 0.2 * tex[..., None])
        elif c == 6:  # permanent crop: orchard rows of dots
            period = rng.uniform(0.18, 0.28)
            fu = (u / period) % 1 - 0.5
            fv = (v / period) % 1 - 0.5
            dots = soft(np.sqrt(fu**2 + fv**2) * period - 0.05, size)
            img = (brown + jitter)[None, None] * np.ones_like(img)
            paint(img, dots, np.array([0.2, 0.45, 0.15]) + jitter)
        elif c == 7:  # residential: small roofs on a street grid
            img = np.full_like(img, 0.5) + jitter
            period = rng.uniform(0.25, 0.35)
            fu = (u / period) % 1 - 0.5
            fv = (v / period) % 1 - 0.5
            roofs = soft(np.maximum(np.abs(fu), np.abs(fv)) * period - 0.3 * period, size)
            paint(img, roofs, np.array([0.65, 0.3, 0.25]) * rng.uniform(0.8, 1.2))
        elif c == 8:  # river: a meandering blue band
            path = v - 0.25 * np.sin(u * rng.uniform(2, 4) + rng.uniform(0, 6))
            paint(
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
            paint(img, soft(d * r * ecc, size), np.array([0.45, 0.25, 0.6]) * (1.2 - dark))
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
            paint(img, 0.8 * soft(np.abs(path) - rng.uniform(0.02, 0.06), size), np.array([0.45, 0.08, 0.05]))
        lo, hi = ma_ranges[int(g)]
        for _ in range(int(rng.integers(lo, hi))):
            cy, cx = rng.uniform(-0.95, 0.95, 2)
            paint(
                img,
                soft(np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) - rng.uniform(0.03, 0.06), size),
                np.array([0.35, 0.02, 0.02]),
            )
        if g >= 3:
            for _ in range(int(rng.integers(1, 4) if g == 3 else rng.integers(3, 7))):
                cy, cx = rng.uniform(-0.9, 0.9, 2)
                paint(
                    img,
                    soft(np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) - rng.uniform(0.04, 0.1), size),
                    np.array([0.95, 0.85, 0.35]),
                )
        if g == 4:
            for _ in range(int(rng.integers(1, 3))):
                cy, cx = rng.uniform(-0.8, 0.8, 2)
                blot = np.sqrt(((yy - cy) / 1.4) ** 2 + (xx - cx) ** 2) - rng.uniform(0.1, 0.2)
                paint(img, soft(blot, size), np.array([0.4, 0.03, 0.03]))
        out[i] = img
    return to_uint8(out, rng, noise=0.03)


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
            paint(img, soft(np.abs(v - off - 0.45) - rng.uniform(0.15, 0.3), size), grey * 1.1 + jitter)
            paint(img, soft(np.abs(v - off) - 0.1, size), np.full(3, 0.35) + jitter)
            dash = soft(np.maximum(np.abs(v - off) - 0.015, np.abs((u * 4) % 1 - 0.5) * 0.25 - 0.06), size)
            paint(img, dash, white)
        elif c == 1:  # baseball diamond: a sand infield and a grass outfield fanning out from home plate
            du, dv = u - rng.uniform(-0.2, 0.2), v - rng.uniform(-0.75, -0.35)
            r = rng.uniform(0.3, 0.42)
            fan = np.maximum(np.sqrt(du**2 + dv**2) - 2.6 * r, (np.abs(du) - dv) / np.sqrt(2))
            paint(img, soft(fan, size), green * 1.25 + jitter)
            paint(img, soft((np.abs(du) + np.abs(dv - r)) / np.sqrt(2) - 0.78 * r, size), sand + jitter)
            paint(
                img, soft((np.abs(du) + np.abs(dv - r)) / np.sqrt(2) - 0.45 * r, size), green * 1.25 + jitter
            )
        elif c == 2:  # beach: land, a sand strip, surf and sea
            shore = v + 0.12 * np.sin(u * rng.uniform(2, 5) + rng.uniform(0, 6)) - rng.uniform(-0.3, 0.3)
            width = rng.uniform(0.15, 0.35)
            paint(img, soft(-shore, size), sand + jitter)
            paint(img, soft(-(shore + width), size), water + jitter)
            paint(img, 0.8 * soft(np.abs(shore + width) - 0.03, size), white)
        elif c == 3:  # bridge: a road across a river
            img = land.copy()
            bend = v - 0.15 * np.sin(u * rng.uniform(1, 3) + rng.uniform(0, 6))
            paint(img, soft(np.abs(bend) - rng.uniform(0.2, 0.35), size), water + jitter)
            paint(
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
                    paint(img, soft(np.sqrt((u - cx) ** 2 + (v - cy) ** 2) - 0.92 * r, size), crop)
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
                paint(img, soft(np.maximum(np.abs(across) - 0.07, -along), size), grey + jitter)
            ring = rng.uniform(0.25, 0.4)
            paint(img, soft(np.abs(r - ring) - 0.08, size), grey + jitter)
            paint(img, soft(r - (ring - 0.08), size), green * 1.2 + jitter)
        elif c == 9:  # ship: a hull and its wake on open water, sometimes off a shore
            coast = soft(v - rng.uniform(0.5, 1.6), size)[..., None]  # water up to a shore, if in view
            img = img * (1 - coast) + (water + jitter)[None, None] * (0.85 + 0.3 * tex) * coast
            cv = rng.uniform(-0.4, 0.4)
            cu = rng.uniform(-0.3, 0.3)
            length, beam = rng.uniform(0.25, 0.45), rng.uniform(0.06, 0.1)
            hull = np.sqrt(((u - cu) / length) ** 2 + ((v - cv) / beam) ** 2) - 1
            behind = np.clip(cu - u, 0, None)
            wake = (u < cu) * soft(np.abs(v - cv) - 0.12 * behind - 0.02, size) * np.exp(-behind / 0.6)
            paint(img, 0.6 * wake, white)
            paint(img, soft(hull * beam, size), white * rng.uniform(0.7, 1.0))
        elif c == 10:  # storage tanks: white discs with shadows on industrial ground
            img = (grey * rng.uniform(0.8, 1.1) + brown * 0.2 + jitter)[None, None] * (0.9 + 0.2 * tex)
            sy, sx = rng.normal(0, 0.04, 2) + 0.05
            for _ in range(int(rng.integers(2, 7))):
                cy, cx = rng.uniform(-0.75, 0.75, 2)
                r = rng.uniform(0.12, 0.25)
                paint(img, 0.6 * soft(np.sqrt((yy - cy - sy) ** 2 + (xx - cx - sx) ** 2) - r, size),
                       np.zeros(3))  # fmt: skip
                paint(
                    img, soft(np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) - r, size), white * rng.uniform(0.8, 1)
                )
        else:  # tennis courts: coloured rectangles with white lines
            surface = np.array([[0.2, 0.5, 0.3], [0.2, 0.35, 0.6], [0.7, 0.35, 0.2]])[rng.integers(3)]
            k = int(rng.integers(1, 4))
            hw, hh = rng.uniform(0.22, 0.3), rng.uniform(0.45, 0.6)
            start = -(k - 1) * hw
            for j in range(k):
                cx = start + 2 * j * hw + rng.uniform(-0.03, 0.03)
                court = box_sd(v, u, 0.0, cx, hh, hw * 0.95)
                paint(img, soft(court, size), surface + jitter)
                inner = box_sd(v, u, 0.0, cx, hh * 0.8, hw * 0.7)
                lines = np.minimum(np.abs(inner), np.maximum(np.abs(v), np.abs(u - cx) - hw * 0.7))
                paint(img, 0.9 * soft(lines - 0.012, size) * (court < 0), white)
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
        paint(img, soft(np.abs(across) - rng.uniform(0.03, 0.06), size), np.full(3, rng.uniform(0.4, 0.6)))
    for _ in range(int(rng.integers(0, 5))):
        cy, cx = rng.uniform(-1, 1, 2)
        roof = np.array([0.6, 0.3, 0.25]) * rng.uniform(0.7, 1.3) if rng.uniform() < 0.6 else np.full(3, 0.7)
        paint(img, soft(box_sd(yy, xx, cy, cx, rng.uniform(0.04, 0.09), rng.uniform(0.04, 0.09)), size), roof)
    for _ in range(int(rng.integers(0, 6))):
        cy, cx = rng.uniform(-1, 1, 2)
        tree = soft(np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) - rng.uniform(0.04, 0.1), size)
        paint(img, tree, np.array([0.12, 0.28, 0.1]) * rng.uniform(0.7, 1.3))
    if rng.uniform() < 0.25:
        cy, cx = rng.uniform(-0.9, 0.9, 2)
        pond = (
            np.sqrt(((yy - cy) / rng.uniform(0.1, 0.25)) ** 2 + ((xx - cx) / rng.uniform(0.1, 0.25)) ** 2) - 1
        )
        paint(img, soft(pond * 0.15, size), np.array([0.12, 0.26, 0.42]))


# smallNORB-like toys ----------------------------------------------------------------------------------------------
