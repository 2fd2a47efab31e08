"""Stable hashes of JSON-able payloads (dataset fingerprints, protocol hashes, cache keys).

A hash must be the same for the same configuration on every CPU, OS and numpy build. Floats are the risk:
a value computed with a transcendental function (``pow``, ``exp``, ``logspace``) differs in its last bits
between libm / SIMD kernels (``np.logspace(-7, 0, 8)[2]`` is ``1e-05`` on an AMD EPYC and
``9.999999999999999e-06`` on an AVX-512 Xeon). So every float enters a hash by its value rounded to
:data:`HASH_FLOAT_DIGITS` significant digits: a configured value (``0.01``, ``1e-05``, ``0.485``) reads back
unchanged - hashes of literal configurations did not move - and a value a few ulps away lands on the same digits.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

#: significant decimal digits a float keeps in a hash; a double has ~16, last-bit noise lives in the 16th
HASH_FLOAT_DIGITS = 12


def canonical_float(value: float) -> float:
    """``value`` rounded to :data:`HASH_FLOAT_DIGITS` significant digits (non-finite values unchanged)."""
    if not math.isfinite(value):
        return value
    return float(f"{value:.{HASH_FLOAT_DIGITS}g}")


def canonical_numbers(payload: Any) -> Any:
    """``payload`` with every float (Python or numpy float64) replaced by :func:`canonical_float`; containers are
    walked (tuples become lists, as JSON reads them), anything else is left for the JSON encoder."""
    if isinstance(payload, bool):
        return payload
    if isinstance(payload, float):
        return canonical_float(float(payload))
    if isinstance(payload, dict):
        return {key: canonical_numbers(value) for key, value in payload.items()}
    if isinstance(payload, (list, tuple)):
        return [canonical_numbers(value) for value in payload]
    return payload


def canonical_json(payload: Any) -> bytes:
    """``payload`` as compact, key-sorted JSON bytes, floats canonicalised (non-JSON values through ``str``)."""
    return json.dumps(canonical_numbers(payload), sort_keys=True, separators=(",", ":"), default=str).encode()


def payload_sha256(payload: Any, length: int | None = None) -> str:
    """sha256 hex digest of :func:`canonical_json` of ``payload`` (first ``length`` characters)."""
    digest = hashlib.sha256(canonical_json(payload)).hexdigest()
    return digest if length is None else digest[:length]


def fingerprint_of(payload: Any) -> str:
    """Short sha256 of a JSON-serialisable description of a dataset's content."""
    return payload_sha256(payload, 16)
