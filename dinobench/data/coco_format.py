"""COCO annotation files (``instances_*.json``) through pycocotools, for every reader of a COCO-format dataset."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

from dinobench.errors import DataError


def load_coco(path: Path) -> Any:
    """``pycocotools.coco.COCO`` of an annotation file (its progress prints silenced); one-line errors."""
    from pycocotools.coco import COCO

    if not path.is_file():
        raise DataError(f"{path}: annotation file missing; expected a COCO instances json (annotations/"
                        f"instances_<split>.json)")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(str(path))
    except RecursionError:
        raise DataError(f"{path}: nested too deeply to read; not a genuine COCO file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc}); re-export the annotations") from None
    except (KeyError, TypeError, AssertionError) as exc:
        raise DataError(f"{path}: not a COCO instances file (missing {exc}); needs images, annotations, "
                        f"categories") from None
