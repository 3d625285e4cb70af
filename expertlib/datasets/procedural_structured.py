"""Structured-group families that widen the embedded benchmark towards VTAB-1k's 19 tasks: smallNORB-like toys
(ray-cast ellipsoid parts on a turntable, by azimuth and elevation) and KITTI-like road scenes (the nearest
vehicle's distance), as :mod:`expertlib.datasets.procedural`."""

from __future__ import annotations

from functools import partial

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
        paint(
            img,
            soft(box_sd(sy, sx, (bottom + mid) / 2, cx, span / 4, hw * 0.12), big),
            np.array([0.3, 0.22, 0.15]),
        )
        crown = np.sqrt(((sy - (mid + top) / 2) / span * 4) ** 2 + ((sx - cx) / hw) ** 2) - 1
        paint(img, soft(crown * hw, big), colour)
        return
    paint(img, soft(box_sd(sy, sx, mid, cx, span / 2, hw), big), colour)
    if kind == "building":  # rows of windows
        win = (np.abs(((sy - bottom) / span * 4) % 1 - 0.5) < 0.2) & (np.abs(sx - cx) < hw * 0.85)
        paint(img, 0.5 * win * (sy < top) * (sy > bottom), np.zeros(3))
    elif kind == "vehicle":  # rear window (not on trucks), lights and wheels
        glass = box_sd(sy, sx, bottom + 0.75 * span, cx, 0.12 * span, 0.75 * hw)
        paint(img, soft(glass, big) * (tall < 3), np.full(3, 0.12))
        for side in (-1, 1):
            lamp = box_sd(sy, sx, bottom + 0.45 * span, cx + side * 0.8 * hw, 0.06 * span, 0.12 * hw)
            paint(img, soft(lamp, big), np.array([0.8, 0.1, 0.1]))
            wheel = box_sd(sy, sx, bottom + 0.08 * span, cx + side * 0.7 * hw, 0.1 * span, 0.15 * hw)
            paint(img, soft(wheel, big), np.full(3, 0.05))


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
        paint(img, below * soft((np.abs(across) - half_road) * focal / z, big), asphalt)
        phase = rng.uniform(0, 9)
        for k in range(1, lanes):
            mark = np.abs(across + half_road - 3.5 * k) - 0.08
            dashed = ((z + phase) % 9 < 3) & below & (z < 60)
            paint(img, dashed * 0.8 * soft(mark * focal / z, big), np.full(3, 0.9))
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
