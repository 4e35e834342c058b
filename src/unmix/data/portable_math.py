"""Elementwise math that gives the same bits on every CPU.

numpy picks SIMD kernels for `sin`, `cos`, `exp` and `arctan2` by CPU feature (SVML on
AVX-512, its own on AVX2, libm below that), and BLAS picks matrix kernels by CPU model;
their last bits differ, and a last-bit difference flips a pixel's rounding to uint8. The
functions here use only operations IEEE 754 rounds exactly (+, -, *, /, sqrt, rint,
comparisons), one numpy call each, in a fixed order, so no dispatch can change a result:
numpy never fuses two calls into one FMA.

Results come in the caller's float dtype, accurate to about one unit in its last place;
what must be exact for that (the reduction of an angle) runs in float64.
"""

from __future__ import annotations

import math

import numpy as np

# pi / 2 split in two (Cody and Waite): HALF_PI_HI carries float64's bits of pi / 2 and
# HALF_PI_LO the rest, so x - k * pi / 2 keeps its accuracy for the |x| < 1e4 used here.
_HALF_PI_HI = 1.5707963267948966
_HALF_PI_LO = 6.123233995736766e-17
_LN2_HI = 0.6931471803691238  # ln 2 with its low 32 bits zero: k * _LN2_HI is exact for |k| < 2**20
_LN2_LO = 1.9082149292705877e-10


def _horner(x: np.ndarray, coefficients: tuple[float, ...]) -> np.ndarray:
    """c0 + x * (c1 + x * (c2 + ...)), one multiply and one add per step, never fused."""
    result = np.full_like(x, coefficients[-1])
    for c in coefficients[-2::-1]:
        result = result * x + c
    return result


# Taylor coefficients of sin(r) / r and cos(r) in r**2. After reduction |r| <= pi / 4,
# where float32 needs 5 and 6 terms (first neglected term < 2e-9) and float64 8 and 9
# (< 3e-17).
_SIN = tuple((-1) ** n / math.factorial(2 * n + 1) for n in range(8))
_COS = tuple((-1) ** n / math.factorial(2 * n) for n in range(9))


def _float_dtype(*arrays: np.ndarray) -> np.dtype:
    dtype = np.result_type(*arrays)
    return dtype if dtype.kind == "f" else np.dtype(np.float64)


def sincos(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sin x, cos x), elementwise, in x's float dtype (float64 for integers).

    x = k * pi / 2 + r is reduced in float64, so |x| up to ~1e4 keeps full accuracy;
    the polynomials then run in x's own dtype, which is what float32 arrays need.
    """
    x = np.asarray(x)
    dtype = _float_dtype(x)
    x64 = x.astype(np.float64)
    k = np.rint(x64 / _HALF_PI_HI)
    r = ((x64 - k * _HALF_PI_HI) - k * _HALF_PI_LO).astype(dtype)
    short = dtype.itemsize <= 4
    r2 = r * r
    s = r * _horner(r2, _SIN[:5] if short else _SIN)
    c = _horner(r2, _COS[:6] if short else _COS)
    q = k.astype(np.int64) & 3  # the quadrant, k mod 4 (two's complement: right for k < 0)
    odd = (q & 1).astype(bool)
    sin_x, cos_x = np.where(odd, c, s), np.where(odd, s, c)
    return np.where(q >= 2, -sin_x, sin_x), np.where((q == 1) | (q == 2), -cos_x, cos_x)


def sin(x: np.ndarray) -> np.ndarray:
    """sin(x), elementwise (see sincos)."""
    return sincos(x)[0]


# Taylor coefficients of atan(a) / a in a**2.
_ATAN = tuple((-1) ** n / (2 * n + 1) for n in range(9))


def _atan_unit(a: np.ndarray) -> np.ndarray:
    """atan(a) for 0 <= a <= 1 (float64).

    Two half-angle steps, atan(a) = 2 atan(a / (1 + sqrt(1 + a**2))), bring a below
    tan(pi / 16) = 0.199, where the Taylor series' 9 terms leave < 1e-14.
    """
    for _ in range(2):
        a = a / (1 + np.sqrt(1 + a * a))
    a2 = a * a
    return 4 * a * _horner(a2, _ATAN)


def arctan2(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The angle of (x, y) in (-pi, pi], elementwise, in the inputs' dtype (0 at the origin)."""
    y, x = np.asarray(y), np.asarray(x)
    dtype = _float_dtype(y, x)
    y64, x64 = y.astype(np.float64), x.astype(np.float64)
    ay, ax = np.abs(y64), np.abs(x64)
    big, small = np.maximum(ay, ax), np.minimum(ay, ax)
    angle = _atan_unit(np.divide(small, big, out=np.zeros_like(big), where=big > 0))
    angle = np.where(ay > ax, (_HALF_PI_HI - angle) + _HALF_PI_LO, angle)  # pi / 2 - angle
    angle = np.where(x64 < 0, (2 * _HALF_PI_HI - angle) + 2 * _HALF_PI_LO, angle)  # pi - angle
    return np.where(y64 < 0, -angle, angle).astype(dtype)


# Taylor coefficients of exp(r) for |r| <= ln(2) / 2, where 14 terms leave < 1e-17.
_EXP = tuple(1 / math.factorial(n) for n in range(14))


def exp(x: np.ndarray) -> np.ndarray:
    """exp(x), elementwise, in x's dtype (for |x| < 700; ldexp scales by 2**k exactly)."""
    x = np.asarray(x)
    x64 = x.astype(np.float64)
    k = np.rint(x64 / _LN2_HI)
    r = (x64 - k * _LN2_HI) - k * _LN2_LO
    return np.ldexp(_horner(r, _EXP), k.astype(np.int32)).astype(_float_dtype(x))


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b with broadcasting, as a fixed-order sum over the inner axis (no BLAS).

    BLAS kernels sum in blocks whose size and FMA use depend on the CPU; this adds the
    products one inner index at a time, left to right. Meant for short inner axes (here
    5 to 10), where a Python loop over them costs little.
    """
    a, b = np.asarray(a), np.asarray(b)
    out = a[..., :, 0, None] * b[..., 0, None, :]
    for k in range(1, a.shape[-1]):
        out = out + a[..., :, k, None] * b[..., k, None, :]
    return out


def layer_sum(weights: list[np.ndarray], colours: np.ndarray) -> np.ndarray:
    """sum_k weights[k] * colours[:, k], per image, added in k's order (no BLAS).

    weights: K arrays (b, ...); colours: (b, K), one value per image and layer.
    """
    shape = (-1,) + (1,) * (weights[0].ndim - 1)
    out = weights[0] * colours[:, 0].reshape(shape)
    for k in range(1, len(weights)):
        out = out + weights[k] * colours[:, k].reshape(shape)
    return out


def pixel_sum(x: np.ndarray) -> np.ndarray:
    """The sum over the last two axes (a power-of-two count of pixels), as a fixed tree of adds.

    numpy's own sum is pairwise with unrolling that a SIMD build may change; halving the
    array until one element is left fixes the order.
    """
    x = np.asarray(x)
    flat = x.reshape(*x.shape[:-2], x.shape[-2] * x.shape[-1])
    n = flat.shape[-1]
    if n & (n - 1):
        raise ValueError(f"pixel_sum needs a power-of-two number of pixels, got {n}")
    while n > 1:
        n //= 2
        flat = flat[..., :n] + flat[..., n:]
    return flat[..., 0]
