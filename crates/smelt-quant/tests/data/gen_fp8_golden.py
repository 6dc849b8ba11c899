"""Golden vectors for smelt's FP8 (E4M3FN, E5M2) and FP4 (E2M1FN) conversions.

Source of truth: ml_dtypes (Google's reference implementation of these formats for NumPy/JAX),
version printed into the output. Regenerate with:

    python -m pip install ml_dtypes==0.6.0 numpy
    python gen_fp8_golden.py > fp8_golden.json

Contents: the decoded value of every code of each format; encodings of hand-picked edge cases
(ties, subnormals, overflow, inf, NaN, signed zero); and, for 1,000,000 pseudo-random float32
inputs made by SplitMix64 (the same integer generator the Rust test runs), the sha256 of the
encoded bytes plus the first 4096 codes for diagnostics.

E2M1 has no NaN encoding and ml_dtypes maps NaN to an arbitrary signed zero, so NaN inputs are
replaced by 0.0 before encoding E2M1 (the Rust test does the same); smelt defines NaN -> +0 there.
"""
import hashlib
import json
import struct

import ml_dtypes
import numpy as np

FORMATS = {
    "e4m3fn": ml_dtypes.float8_e4m3fn,
    "e5m2": ml_dtypes.float8_e5m2,
    "e2m1fn": ml_dtypes.float4_e2m1fn,
}
MASK = (1 << 64) - 1


def splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return state, z ^ (z >> 31)


def random_bits(n, seed=0x5EED_F8):
    """float32 bit patterns: mostly |x| in [2^-24, 2^18) with random sign and mantissa, and
    every 64th a raw 32-bit pattern (NaNs, infinities, f32 subnormals)."""
    out = np.empty(n, dtype=np.uint32)
    s = seed
    for i in range(n):
        s, r = splitmix64(s)
        if i % 64 == 63:
            out[i] = r & 0xFFFFFFFF
        else:
            sign = r >> 63
            exp = ((r >> 40) % 42) - 24
            out[i] = (sign << 31) | ((127 + exp) << 23) | (r & 0x7FFFFF)
    return out


def f32(bits):
    return np.asarray(bits, dtype=np.uint32).view(np.float32)


def encode(values_f32, dtype):
    codes = values_f32.astype(dtype).view(np.uint8)
    if dtype == ml_dtypes.float4_e2m1fn:
        codes = codes & 0x0F
    return codes


def decoded(x):
    """JSON-safe value: floats, or the strings nan / inf / -inf."""
    if np.isnan(x):
        return "nan"
    if np.isinf(x):
        return "inf" if x > 0 else "-inf"
    return float(x)


EDGE = [0.0, -0.0, 1.0, -1.0, 1.0625, 1.1875, 1.03125, 0.5, 3.0, 2.5, 448.0, 464.0, 465.0,
        480.0, 500.0, -464.0, 57344.0, 61440.0, 61441.0, 65536.0, 6.0, 7.0, 5.0, 0.25, 0.75,
        0.2, 1e-3, 2.0 ** -6, 2.0 ** -7, 2.0 ** -9, 2.0 ** -10, 1.5 * 2.0 ** -10, 2.0 ** -14,
        2.0 ** -16, 2.0 ** -17, 1.5 * 2.0 ** -17, 3.0 * 2.0 ** -18, 1e-30, 3.4e38,
        float("inf"), float("-inf"), float("nan"), -float("nan")]

out = {"source": f"ml_dtypes {ml_dtypes.__version__}, numpy {np.__version__}", "formats": {}}
bits = random_bits(1_000_000)
for name, dtype in FORMATS.items():
    n_codes = 16 if name == "e2m1fn" else 256
    table = [decoded(v) for v in np.arange(n_codes, dtype=np.uint8).view(dtype).astype(np.float32)] \
        if n_codes == 256 else \
        [decoded(float(np.array([c], dtype=np.uint8).view(dtype)[0])) for c in range(16)]
    edge_f = np.array(EDGE, dtype=np.float32)
    rnd_f = f32(bits).copy()
    if name == "e2m1fn":
        edge_f = edge_f[~np.isnan(edge_f)]
        rnd_f[np.isnan(rnd_f)] = 0.0
    with np.errstate(invalid="ignore"):
        edge_codes = encode(edge_f, dtype)
        rnd_codes = encode(rnd_f, dtype)
    out["formats"][name] = {
        "decode": table,
        "edge_cases": [
            {"input_bits": int(b), "code": int(c)}
            for b, c in zip(edge_f.view(np.uint32), edge_codes)
        ],
        "random": {
            "count": int(bits.size),
            "sha256": hashlib.sha256(rnd_codes.tobytes()).hexdigest(),
            "first_codes": [int(c) for c in rnd_codes[:4096]],
        },
    }
json.dump(out, __import__("sys").stdout)
