"""Hashes are computed from what the user configured, canonically: last-bit float noise from another CPU's
libm / SIMD kernels never moves a protocol hash, run key or cache key (issue 28)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from dinobench.features.keys import cache_key
from dinobench.utils.hashing import HASH_FLOAT_DIGITS, canonical_float, canonical_json, payload_sha256

# a value a user writes: up to HASH_FLOAT_DIGITS significant digits, any sign, normal double range (0 is exact)
configured = st.builds(lambda mantissa, exponent: float(f"{mantissa}e{exponent}"),
                       st.integers(-(10 ** HASH_FLOAT_DIGITS) + 1, 10 ** HASH_FLOAT_DIGITS - 1).filter(bool),
                       st.integers(-290, 290))


@given(configured, st.integers(1, 8))
def test_a_configured_float_is_kept_and_its_last_bit_neighbours_land_on_it(value, ulps):
    assert canonical_float(value) == value  # hashes of literal configurations did not move
    up, down = value, value
    for _ in range(ulps):
        up, down = np.nextafter(up, np.inf), np.nextafter(down, -np.inf)
    assert canonical_float(float(up)) == value and canonical_float(float(down)) == value


def test_json_of_plain_data_is_what_it_was_before_floats_were_canonicalised():
    """Keys sorted, compact separators, ints / bools / strings / None / non-JSON values as before: only floats
    with more than HASH_FLOAT_DIGITS significant digits are written differently."""
    payload = {"b": [1, True, None, "x", 0.25, 1e-05, (2, 3)], "a": {"path": __import__("pathlib").Path("/d")}}
    before = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()
    assert canonical_json(payload) == before
    assert payload_sha256(payload) == hashlib.sha256(before).hexdigest()
    assert canonical_json({"x": float("nan"), "y": float("inf")}) == b'{"x":NaN,"y":Infinity}'


def test_computed_floats_hash_alike_and_real_changes_do_not():
    amd = {"Cs": [float(c) for c in np.logspace(-7, 0, 8)], "lr": 0.1 + 0.2}
    xeon = {"Cs": [1e-07, 1e-06, 9.999999999999999e-06, 1e-4, 1e-3, 1e-2, 1e-1, 1.0], "lr": 0.3}
    assert payload_sha256(amd) == payload_sha256(xeon)
    assert payload_sha256({**xeon, "lr": 0.3000001}) != payload_sha256(xeon)
    assert payload_sha256({"v": np.float64(0.1)}) == payload_sha256({"v": 0.1})  # numpy float64 is a float


def test_feature_cache_key_ignores_last_bit_noise_in_the_normalisation_constants():
    mean = [0.485, 0.456, 0.406]
    noisy = [float(np.nextafter(m, np.inf)) for m in mean]
    payload = {"transform": {"mean": mean, "resize": 256}, "kind": "cls"}
    assert cache_key(payload) == cache_key({**payload, "transform": {"mean": noisy, "resize": 256}})
    assert cache_key(payload) != cache_key({**payload, "transform": {"mean": [0.5, 0.5, 0.5], "resize": 256}})
