"""Reading pickled ground-truth files (e.g. revisited Oxford/Paris ``gnd_*.pkl``) without running code.

:func:`restricted_load` admits plain containers (dict, list, tuple, set, str, bytes, numbers, None,
booleans: pickle opcodes that call nothing) and numpy arrays, dtypes and scalars; any other global a
pickle names (``os.system``, ``builtins.eval``, a class of some library, ...) is refused before it is
looked up, with one line naming the file and the global.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from dinobench.errors import DataError

#: (module, name) globals a ground-truth pickle may name: what numpy arrays/scalars (de)serialise with
#: (numpy 1 ``numpy.core``, numpy 2 ``numpy._core``) and the plain containers' reconstructors
ALLOWED_GLOBALS = frozenset({
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("collections", "OrderedDict"), ("builtins", "set"), ("builtins", "frozenset"),
    ("builtins", "bytearray"), ("builtins", "complex"), ("_codecs", "encode"),
})


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, source: str) -> None:
        super().__init__(file, encoding="latin1")  # python-2 pickles (the revisited files) hold latin-1 str
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise DataError(f"{self.source}: refused to unpickle global {module}.{name} (a ground-truth file may "
                            f"hold only plain containers and numpy arrays); the file is not a genuine one - "
                            f"download it again")
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"{self.source}: refused to unpickle a persistent id; a ground-truth file may hold only "
                        f"plain containers and numpy arrays")


def restricted_loads(data: bytes, source: str = "<bytes>") -> Any:
    """Unpickle ``data`` admitting only plain containers and numpy arrays (see the module docstring)."""
    try:
        return _RestrictedUnpickler(io.BytesIO(data), source).load()
    except DataError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            ImportError, KeyError, UnicodeDecodeError) as exc:
        raise DataError(f"{source}: not a readable pickle ({type(exc).__name__}: {exc}); download the file again")


def restricted_load(path: str | Path) -> Any:
    """:func:`restricted_loads` of the file ``path`` (a missing file is a one-line DataError)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    return restricted_loads(data, str(path))
