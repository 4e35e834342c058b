"""Synthetic labelled scenes: unmix's default image source, offline and seed-deterministic.

Each 32x32 RGB image is one foreground object whose class decides its shape or
texture, over a dark, muted, varied background (gradients, glows, blotches, soft stripes),
with random colours, shading, a shadow, an outline, a small distractor and
sensor noise, so that two superimposed scenes cannot be told apart by colour
or flatness alone. Numpy only: the data stages must start fast, without torch.
"""

from __future__ import annotations

import math

import numpy as np

from unmix.data.imageset import IMAGE_SHAPE, ImageSet
from unmix.data.portable_math import arctan2, exp, layer_sum, matmul, pixel_sum, sin, sincos

_SIZE = IMAGE_SHAPE[0]
# Big enough that numpy's per-call overhead vanishes, small enough that a
# chunk's float32 fields stay near the CPU caches (its weights are 32 MB).
# Each chunk has its own random stream: changing this changes the images.
_CHUNK = 1024
_F = np.float32
# Pixel-centre coordinates in pixels about the image centre, so signed distances
# are in pixels and clip(0.5 - d, 0, 1) anti-aliases edges over one pixel.
_Y, _X = np.mgrid[0:_SIZE, 0:_SIZE].astype(_F) - (_SIZE - 1) / 2
_TAU = _F(2 * np.pi)


def _blur_matrix(n_knots: int) -> np.ndarray:
    """Row-normalised Gaussian weights mapping n_knots control values onto _SIZE pixels."""
    knots = np.linspace(-4, _SIZE + 3, n_knots)
    spacing = knots[1] - knots[0]
    z = (np.arange(_SIZE)[:, None] - knots[None, :]) / (0.8 * spacing)
    w = exp(-0.5 * (z * z))
    total = w[:, :1]
    for k in range(1, n_knots):  # left to right: a fixed order of adds
        total = total + w[:, k : k + 1]
    return (w / total).astype(_F)


_BLUR_COARSE, _BLUR_FINE = _blur_matrix(5), _blur_matrix(10)


def _pixel_mean(x: np.ndarray) -> np.ndarray:
    """Mean over each image's pixels, shaped to broadcast back: (b, 1, 1)."""
    return (pixel_sum(x) / _F(_SIZE * _SIZE))[:, None, None]


def _hsv(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """RGB (..., 3) in [0, 1] from hue, saturation, value arrays (hue wraps around 1)."""
    k = (np.array([5, 3, 1], _F) + (h[..., None] % 1) * 6) % 6
    return v[..., None] * (1 - s[..., None] * np.clip(np.minimum(k, 4 - k), 0, 1))


def _len(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Euclidean length; np.hypot is an unvectorised libm call, several times slower."""
    return np.sqrt(x * x + y * y)


def _box(u: np.ndarray, v: np.ndarray, hx: np.ndarray, hy: np.ndarray) -> np.ndarray:
    """Signed distance to an axis-aligned box with half-sizes hx, hy."""
    qx, qy = np.abs(u) - hx, np.abs(v) - hy
    return _len(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0)


def _star(u: np.ndarray, v: np.ndarray, r: np.ndarray, n: int, m: float | np.ndarray) -> np.ndarray:
    """Signed distance to an n-pointed star of outer radius r (m=2: regular polygon).

    Exact, after Inigo Quilez's sdStar: fold into one sector, then a segment distance.
    """
    # Python and float32 constants, not numpy float64 scalars, which would
    # silently promote every array below to float64 (half the speed).
    an, en = math.pi / n, np.pi / np.asarray(m, _F)
    acy, acx = (float(value) for value in sincos(np.float64(an)))
    ecy, ecx = sincos(en)
    sin_b, cos_b = sincos(np.mod(arctan2(u, v), 2 * an) - an)
    rad = _len(u, v)
    px, py = rad * cos_b - r * acx, rad * np.abs(sin_b) - r * acy
    t = np.clip(-(px * ecx + py * ecy), 0, r * (acy / ecy))
    px, py = px + ecx * t, py + ecy * t
    return _len(px, py) * np.sign(px)


def _cross(u: np.ndarray, v: np.ndarray, r: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Signed distance to a plus of arm half-length r and arm half-width w."""
    return np.minimum(_box(u, v, r, w), _box(u, v, w, r))


def _ellipse(u: np.ndarray, v: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Approximate signed distance to an ellipse with semi-axes a, b.

    The level set divided by its gradient norm is near-exact close to the edge,
    so the tips anti-alias as crisply as the flanks.
    """
    k0, k1 = _len(u / a, v / b), _len(u / (a * a), v / (b * b))
    return k0 * (k0 - 1) / (k1 + 1e-6)


def _stripe_mix(w: np.ndarray, period: np.ndarray) -> np.ndarray:
    """Anti-aliased 0/1 stripes across coordinate w: sin / its slope is the pixel distance."""
    return np.clip(0.5 + sin(_TAU * w / period) * (period / _TAU), 0, 1)


def _checker_mix(u: np.ndarray, v: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Anti-aliased 0/1 checkerboard of square cells, distance taken to the nearer edge."""
    su, sv = sin(np.pi * u / cell), sin(np.pi * v / cell)
    dist = np.sign(su * sv) * np.minimum(np.abs(su), np.abs(sv)) * (cell / np.pi)
    return np.clip(0.5 + dist, 0, 1)


# Each shape maps local coordinates (u, v), radius r and a variation knob k in
# [0, 1) to (signed distance, texture mix or None); None means a plain fill.
_SHAPES = {
    "circle": lambda u, v, r, k: (_len(u, v) - r, None),
    "ring": lambda u, v, r, k: (np.abs(_len(u, v) - 0.7 * r) - (0.2 + 0.1 * k) * r, None),
    "square": lambda u, v, r, k: (_box(u, v, 0.8 * r, 0.8 * r), None),
    "triangle": lambda u, v, r, k: (_star(u, v, 1.2 * r, 3, 2.0), None),
    "cross": lambda u, v, r, k: (_cross(u, v, r, (0.22 + 0.1 * k) * r), None),
    "star": lambda u, v, r, k: (_star(u, v, 1.2 * r, 5, 3.0 + 0.8 * k), None),
    # A disc with an offset disc bitten out; the offset sets the horn thickness.
    "crescent": lambda u, v, r, k: (
        np.maximum(_len(u, v) - r, 0.85 * r - _len(u - (0.4 + 0.2 * k) * r, v)), None),
    "ellipse": lambda u, v, r, k: (_ellipse(u, v, 1.1 * r, (0.35 + 0.15 * k) * r), None),
    "stripes": lambda u, v, r, k: (_len(u, v) - r, _stripe_mix(v + 7 * k, 3.5 + 2.5 * k)),
    "checker": lambda u, v, r, k: (_box(u, v, 0.85 * r, 0.85 * r), _checker_mix(u, v, 2.5 + 2 * k)),
}  # fmt: skip
SHAPE_CLASSES: tuple[str, ...] = tuple(_SHAPES)


def _background(rng: np.random.Generator, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backgrounds as (t, m, colours): c1 * (1 - t) + c2 * t, then blotches of c3 with weight m."""
    uni = lambda lo, hi: rng.uniform(lo, hi, (b, 1, 1)).astype(_F)  # noqa: E731 - a short local helper, read like a formula
    # (b, 3 colours, RGB): dark, muted grounds (value ~0.04-0.18, saturation 0.15-0.5) under
    # vivid objects, as in a night scene. Full-range random colours (until 2026-12-03) left a
    # separator nothing to learn at the default budget: the split of two full-frame
    # backgrounds' colours between the images is ambiguous in the mixture, and `best` stayed
    # at "both outputs = the mixture" (+0.7 dB over it); over flat dark grounds it separated
    # (+3.7 dB). Textured grounds, `best` with Muon and batch 64 (docs/pipeline.md): value
    # 0.07-0.35 (the previous grounds) +3.85 dB, 0.05-0.24 +4.94, these +5.26.
    hue, sat, val = np.moveaxis(rng.uniform((0, 0.15, 0.0025), 1, (b, 3, 3)).astype(_F), -1, 0)
    colours = _hsv(hue, 0.15 + (sat - 0.15) * _F(0.35 / 0.85), 0.03 + 0.15 * np.sqrt(val))
    angle, phase, span, period = uni(0, 2 * np.pi), uni(0, 2 * np.pi), uni(16, 48), uni(6, 18)
    gx, gy, sharp, amp = uni(-20, 20), uni(-20, 20), uni(1, 4), uni(0, 0.6)
    coarse = matmul(_BLUR_COARSE, matmul(rng.random((b, 5, 5), _F), _BLUR_COARSE.T))
    fine = matmul(_BLUR_FINE, matmul(rng.random((b, 10, 10), _F), _BLUR_FINE.T))
    kind = rng.integers(0, 5, b)
    sin_a, cos_a = sincos(angle)
    s = _X * cos_a + _Y * sin_a
    t = np.empty((b, _SIZE, _SIZE), _F)
    # Kinds: linear gradient, radial glow, blotches, soft stripes, near-solid.
    fields = (
        lambda i: 0.5 + s[i] / span[i],
        lambda i: _len(_X - gx[i], _Y - gy[i]) / (span[i] + 8),
        lambda i: 0.5 + (coarse[i] - _pixel_mean(coarse[i])) * sharp[i] * 4,
        lambda i: 0.5 + 0.5 * sharp[i] * sin(_TAU * s[i] / period[i] + phase[i]),
        lambda i: 0.1 + 0.2 * s[i] / _SIZE,
    )
    for j, field in enumerate(fields):
        i = np.flatnonzero(kind == j)
        t[i] = field(i)
    # Finer blotches of a third colour on every kind, so no background is truly flat.
    m = amp * np.clip((fine - _pixel_mean(fine)) * 8 + 0.5, 0, 1)
    return np.clip(t, 0, 1), m, colours


# One function of ~90 lines on purpose: every image's ~30 parameters are drawn from one stream
# in a fixed order, then feed the geometry and the compositing; split, they would travel as a
# bag of arrays, and any reordering of the draws changes every generated data set's bytes.
def _render(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 (b, 32, 32, 3) scenes, one object of class labels[i] in image i.

    Every layer is a fixed colour per image times a scalar weight field, so the
    layers are composited as scalar weights and turned into RGB at the end, one
    channel at a time: three times less memory traffic than RGB compositing.
    """
    b = len(labels)
    uni = lambda lo, hi: rng.uniform(lo, hi, b).astype(_F)  # noqa: E731 - a short local helper, read like a formula
    col = lambda a: a[:, None, None]  # noqa: E731 - a short local helper, read like a formula
    t, m, bg_colours = _background(rng, b)

    # Per-image object parameters, drawn for the whole chunk in a fixed order so
    # the stream of random numbers does not depend on how classes fall.
    cx, cy, r = uni(-7, 7), uni(-7, 7), uni(6.5, 11.5)
    theta, knob = uni(0, 2 * np.pi), uni(0, 1)
    shadow_dx, shadow_dy = uni(-3, 3), uni(-3, 3)
    hue, sat, val = uni(0, 1), uni(0.45, 1), uni(0.45, 1)
    fg = _hsv(hue, sat, val)
    fg2 = _hsv(hue + uni(0.25, 0.75), uni(0, 1), (val + uni(0.35, 0.65)) % 1)
    alt = _hsv(hue + 0.5, sat, np.where(val < 0.7, _F(0.95), _F(0.25)))
    shade, light = uni(0, 0.6), uni(0, 2 * np.pi)
    has_shadow, has_outline, has_distractor = rng.random((3, b)) < [[0.4], [0.3], [0.5]]
    outline_w = uni(0.5, 1.2)
    outline_col = np.where((rng.random(b) < 0.5)[:, None], fg * 0.2, 0.6 + 0.4 * fg)
    dist_col = _hsv(uni(0, 1), uni(0, 1), uni(0, 1))
    dx, dy, dr, round_ = uni(-13, 13), uni(-13, 13), uni(1.5, 3), (rng.random(b) < 0.5).astype(_F)
    noise = uni(0, 0.16) * (rng.random(b) < 0.7)

    dist = np.empty((b, _SIZE, _SIZE), _F)
    shadow = np.full_like(dist, np.inf)  # no shadow: infinitely far from one
    tex = np.zeros_like(dist)
    for c, shape in enumerate(_SHAPES.values()):
        i = np.flatnonzero(labels == c)
        if not len(i):
            continue
        sin_t, cos_t = (col(value) for value in sincos(theta[i]))
        ox, oy = _X - col(cx[i]), _Y - col(cy[i])
        u, v = ox * cos_t + oy * sin_t, oy * cos_t - ox * sin_t
        ri, ki = col(r[i]), col(knob[i])
        dist[i], mix = shape(u, v, ri, ki)
        if mix is not None:
            tex[i] = mix
        # The shadow is the same shape displaced: shift in image axes, then rotate.
        j = has_shadow[i]
        sx, sy, cos_j, sin_j = col(shadow_dx[i][j]), col(shadow_dy[i][j]), cos_t[j], sin_t[j]
        su, sv = u[j] - sx * cos_j - sy * sin_j, v[j] - sy * cos_j + sx * sin_j
        shadow[i[j]] = shape(su, sv, ri[j], ki[j])[0]

    # A small disc or square (a box with full corner rounding is a disc) behind
    # the object: plausible clutter that a separator must keep with its scene.
    i = np.flatnonzero(has_distractor)
    h, rounding = col(dr[i] * (1 - round_[i])), col(dr[i] * round_[i])
    a_small = np.zeros_like(dist)
    a_small[i] = np.clip(0.5 + rounding - _box(_X - col(dx[i]), _Y - col(dy[i]), h, h), 0, 1)
    lit_bg = 1 - np.clip(0.5 - shadow / 2, 0, 1) * _F(0.55)
    alpha = np.clip(0.5 - dist, 0, 1)
    a_line = np.clip(outline_w[:, None, None] + 0.5 - np.abs(dist), 0, 1) * col(has_outline)

    # Recolour objects that would vanish into the (mean of the) background under them.
    frac_c2 = (pixel_sum(alpha * t) / (pixel_sum(alpha) + 1e-6))[:, None]
    under = bg_colours[:, 0] * (1 - frac_c2) + bg_colours[:, 1] * frac_c2
    gap = np.abs(fg - under)
    fg = np.where(((gap[:, 0] + gap[:, 1] + gap[:, 2]) < 0.6)[:, None], alt, fg)

    below = (1 - alpha) * (1 - a_line) * lit_bg
    ground = below * (1 - a_small)
    sin_l, cos_l = sincos(light)
    lit = (_X - col(cx)) * col(cos_l) + (_Y - col(cy)) * col(sin_l)
    w_obj = alpha * (1 - a_line) * (1 + col(shade / r) * lit)
    weights = [None] * 8  # (b, 32, 32) each, in the palette's order below
    weights[2] = ground * m
    ground *= 1 - m
    weights[0] = ground * (1 - t)
    weights[1] = ground * t
    weights[3] = below * a_small
    weights[4] = w_obj * (1 - tex)
    weights[5] = w_obj * tex
    weights[6] = a_line
    # Sensor noise, luminance only and uniform rather than Gaussian: either way it
    # looks the same, and this costs a fifteenth of Gaussian RGB noise.
    weights[7] = col(noise) * (rng.random((b, _SIZE, _SIZE), _F) - 0.5)
    layers = np.stack([dist_col, fg, fg2, outline_col, np.ones_like(fg)], axis=1)
    palette = np.concatenate([bg_colours, layers], axis=1) * 255  # (b, 8 layers, RGB)
    # One colour channel at a time, layers added in a fixed order: whole contiguous
    # images per operation, and no BLAS kernel whose sums differ by CPU.
    img = np.stack([layer_sum(weights, palette[:, :, c]) for c in range(3)], axis=-1)
    img += 0.5  # so the truncating cast below rounds
    np.clip(img, 0, 255, out=img)
    return img.astype(np.uint8).reshape(b, *IMAGE_SHAPE)


def generate_shapes(n_images: int, seed: int) -> ImageSet:
    """Generate n_images labelled synthetic scenes, byte-identical for the same seed.

    Labels are balanced (image i gets class i % len(SHAPE_CLASSES), then shuffled
    with the seed). Work is vectorised over chunks of images, so tens of thousands
    of images take seconds on a laptop CPU. The bytes are the same on every CPU:
    sin, cos, arctan2, the blurs and the colour sums come from unmix.data.portable_math
    (IEEE basic operations in a fixed order), not from numpy's SIMD kernels or BLAS,
    whose last bits differ by CPU and would flip pixels by one level.
    """
    if n_images < 0:
        raise ValueError(f"n_images must be >= 0, got {n_images}")
    n_chunks = -(-n_images // _CHUNK)
    label_seed, *chunk_seeds = np.random.SeedSequence(seed).spawn(1 + n_chunks)
    labels = np.random.default_rng(label_seed).permutation(np.arange(n_images, dtype=np.int64) % len(SHAPE_CLASSES))
    images = np.empty((n_images, *IMAGE_SHAPE), np.uint8)
    for start, chunk_seed in zip(range(0, n_images, _CHUNK), chunk_seeds):
        stop = min(start + _CHUNK, n_images)
        images[start:stop] = _render(labels[start:stop], np.random.default_rng(chunk_seed))
    return ImageSet(images, labels, SHAPE_CLASSES)
