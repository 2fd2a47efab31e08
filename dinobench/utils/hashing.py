"""Stable hashes of JSON-able payloads (dataset fingerprints, protocol hashes, cache keys)."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(payload: Any) -> bytes:
    """``payload`` as compact, key-sorted JSON bytes (non-JSON values through ``str``)."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()


def payload_sha256(payload: Any, length: int | None = None) -> str:
    """sha256 hex digest of :func:`canonical_json` of ``payload`` (first ``length`` characters)."""
    digest = hashlib.sha256(canonical_json(payload)).hexdigest()
    return digest if length is None else digest[:length]


def fingerprint_of(payload: Any) -> str:
    """Short sha256 of a JSON-serialisable description of a dataset's content."""
    return payload_sha256(payload, 16)
