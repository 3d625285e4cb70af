"""Natural-group families that widen the embedded benchmark towards VTAB-1k's 19 tasks: SVHN-like printed
characters on clutter, DTD-like textures and pets-like coated animals (as :mod:`expertlib.datasets.procedural`)."""

from __future__ import annotations

import numpy as np

from expertlib.datasets.drawing import (
    SIZE,
    affine,
    box_sd,
    cells,
    contrasting_pair,
    grid,
    paint,
    random_colors,
    rotation_theta,
    segments_sd,
    smooth_noise,
    soft,
    to_uint8,
)


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
        drawn = affine(glyphs[font, char], rotation_theta(angle, zoom, shift), size)
        cover = np.maximum(cover, np.clip(drawn, 0, 1) * present[:, None, None])
    fg, bg = contrasting_pair(rng, n, 0.3)
    yy, xx = grid(size)
    wall = bg[:, None, None] * (0.75 + 0.5 * smooth_noise(rng, n, 1.6, size)[..., None])
    for i in range(n):  # clutter: a plate's edge or a frame behind the characters
        for _ in range(int(rng.integers(0, 3))):
            cy, cx = rng.uniform(-1, 1, 2)
            box = box_sd(yy, xx, cy, cx, rng.uniform(0.2, 0.9), rng.uniform(0.2, 0.9))
            edge = soft(np.abs(box) - rng.uniform(0.02, 0.06), size)
            paint(wall[i], 0.7 * edge, random_colors(rng, 1)[0])
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
            d1, d2 = cells(yy, xx, pts)
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
                dist = segments_sd(yy[win], xx[win], (mid[j] - half[j])[None], (mid[j] + half[j])[None])
                paint(img[win], soft(dist - 0.025, big), colors[j])
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
    theta = rotation_theta(
        rng.uniform(-0.2, 0.2, n), rng.uniform(0.85, 1.15, n), rng.uniform(-0.1, 0.1, (n, 2)),
        rng.uniform(size=n) < 0.5,
    )  # fmt: skip
    cover = np.clip(affine(masks / 255.0, theta, size), 0, 1)
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
