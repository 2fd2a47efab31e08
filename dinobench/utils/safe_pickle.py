"""Reading pickled ground-truth files (e.g. revisited Oxford/Paris ``gnd_*.pkl``) without running code, and
without trusting what the allowed constructors are given.

:func:`restricted_load` admits plain containers (dict, list, tuple, set, str, bytes, numbers, None, booleans:
pickle opcodes that call nothing) and **numeric** numpy arrays and scalars (bool, int, uint, float, complex).
Any other global a pickle names (``os.system``, ``builtins.eval``, a class of some library, ...) is refused
before it is looked up. The allowed constructors are checked before they run: an array or scalar of an object,
void or structured dtype is refused (its bytes would be read as pointers: a forged file could crash the
interpreter), so is an array of more than :data:`MAX_ELEMENTS` elements, a ``bytes(n)`` / ``bytearray(n)`` that
would allocate, or an encoding other than latin-1. After loading, the object graph is walked once: more than
:data:`MAX_NODES` nodes counted with their repetitions (a small file whose shared references expand without
bound, or a cycle) is refused. Every refusal is one :class:`~dinobench.errors.DataError` line naming the file.
"""

from __future__ import annotations

import _compat_pickle
import collections
import io
import math
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np

from dinobench.errors import DataError

#: the largest array a ground-truth file may hold (a revisited gnd holds ~10^5 integers in all)
MAX_ELEMENTS = 50_000_000
#: the most container / array nodes the loaded object may expand to (shared references counted every time)
MAX_NODES = 2_000_000
#: numpy dtype kinds a ground-truth array may have: bool, signed / unsigned int, float, complex
NUMERIC_KINDS = frozenset("biufc")
_MULTIARRAY = ("numpy.core.multiarray", "numpy._core.multiarray")
_NUMERIC = ("numpy.core.numeric", "numpy._core.numeric")


class _Refused(Exception):
    """Raised inside the unpickler; turned into one DataError line naming the file."""


def _numeric_dtype(dtype: Any) -> np.dtype:
    """``dtype`` as a numpy dtype if it is a plain numeric one (no fields, no objects, no void); else refused."""
    try:
        dt = np.dtype(dtype)
    except (TypeError, ValueError) as exc:
        raise _Refused(f"an array of an unknown dtype ({type(exc).__name__})") from None
    if dt.kind not in NUMERIC_KINDS or dt.fields is not None or dt.hasobject or dt.subdtype is not None:
        raise _Refused(f"an array of dtype {dt.str!r} (only numeric arrays are allowed)")
    return dt


def _elements(shape: Any) -> int:
    """The element count of ``shape`` (an int or a tuple of ints), refused beyond :data:`MAX_ELEMENTS`."""
    dims = (shape,) if isinstance(shape, int) else shape
    if not isinstance(dims, tuple) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in dims):
        raise _Refused(f"an array shape that is not a tuple of sizes ({type(shape).__name__})")
    count = math.prod(dims)
    if count > MAX_ELEMENTS:
        raise _Refused(f"an array of {count} elements (at most {MAX_ELEMENTS})")
    return count


class _ArrayClass:
    """Stands for ``numpy.ndarray`` in a pickle: only as the ``_reconstruct`` argument, never called."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise _Refused("a direct numpy.ndarray(...) call (arrays are rebuilt from their data only)")


_ARRAY_CLASS = _ArrayClass()


def _raw(data: Any) -> Any:
    """Array / scalar data as bytes (python-2 pickles, read as latin-1, hold it as str)."""
    return data.encode("latin-1") if isinstance(data, str) else data


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not _ARRAY_CLASS:
        raise _Refused("an array of a subclass")
    if shape != (0,):  # numpy pickles an empty placeholder, then BUILDs it from the data
        raise _Refused(f"an array placeholder of shape {shape!r:.40} (numpy writes (0,))")
    return np.ndarray((0,), dtype=_numeric_dtype(_raw(dtype)))


def _scalar(dtype: Any, data: Any = None) -> Any:
    dt = _numeric_dtype(dtype)
    data = _raw(data)
    if not isinstance(data, (bytes, bytearray)) or len(data) != dt.itemsize:
        raise _Refused(f"a numpy scalar whose data is not {dt.itemsize} bytes")
    return np.frombuffer(bytes(data), dtype=dt)[0]


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: str = "C") -> np.ndarray:
    dt = _numeric_dtype(dtype)
    count = _elements(tuple(shape))
    if not isinstance(buffer, (bytes, bytearray)) or len(buffer) != count * dt.itemsize:
        raise _Refused("an array whose data does not match its shape")
    return np.frombuffer(bytes(buffer), dtype=dt).reshape(tuple(shape), order="F" if order == "F" else "C").copy(order="K")


def _bytes(*args: Any) -> bytes:
    if args:  # protocol 2 pickles only the empty bytes object as bytes(); bytes(n) would allocate n bytes
        raise _Refused("bytes(...) with arguments")
    return b""


def _bytearray(*args: Any) -> bytearray:
    if args and not isinstance(args[0], (bytes, str)):
        raise _Refused("bytearray(n) (only copies of pickled data are allowed)")
    return bytearray(*args)


def _encode(text: Any, encoding: Any = "utf-8") -> bytes:
    if not isinstance(text, str) or str(encoding).lower().replace("_", "-") not in ("latin1", "latin-1"):
        raise _Refused("_codecs.encode other than str -> latin-1 bytes")
    return text.encode("latin-1")


#: (module, name) globals a ground-truth pickle may name -> what the unpickler gives it instead (the checked
#: constructor); what numpy arrays/scalars (de)serialise with (numpy 1 ``numpy.core``, numpy 2 ``numpy._core``)
#: and the plain containers' reconstructors
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): _ARRAY_CLASS, ("numpy", "dtype"): np.dtype,
    **{(m, "_reconstruct"): _reconstruct for m in _MULTIARRAY}, **{(m, "scalar"): _scalar for m in _MULTIARRAY},
    **{(m, "_frombuffer"): _frombuffer for m in _NUMERIC},
    ("collections", "OrderedDict"): collections.OrderedDict, ("builtins", "set"): set, ("builtins", "frozenset"): frozenset,
    ("builtins", "bytearray"): _bytearray, ("builtins", "bytes"): _bytes, ("builtins", "complex"): complex,
    ("_codecs", "encode"): _encode,
}


def _checked_build(self: "_RestrictedUnpickler") -> None:
    """BUILD: ``obj.__setstate__(state)`` - for an array only with a numeric dtype and data of its exact size;
    for a dtype only when it stays numeric; nothing else is built."""
    state = self.stack.pop()
    inst = self.stack[-1]
    if isinstance(inst, np.ndarray):
        if not (isinstance(state, tuple) and len(state) in (4, 5)):
            raise _Refused("an array state of an unknown form")
        shape, dtype, fortran, data = state[-4:]
        if not isinstance(dtype, np.dtype):
            raise _Refused("an array state without a dtype")
        dt = _numeric_dtype(dtype)
        count = _elements(shape)
        data = _raw(data)
        if not isinstance(data, (bytes, bytearray)) or len(data) != count * dt.itemsize:
            raise _Refused("an array whose data does not match its shape")
        inst.__setstate__((*state[:-4], shape, dtype, bool(fortran), bytes(data)))
        return
    if isinstance(inst, np.dtype):
        inst.__setstate__(state)
        _numeric_dtype(inst)
        return
    raise _Refused(f"building a {type(inst).__name__} from a state")


class _RestrictedUnpickler(pickle._Unpickler):  # the Python unpickler: its BUILD opcode can be checked
    dispatch = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.BUILD[0]] = _checked_build

    def __init__(self, file: io.BufferedIOBase, source: str) -> None:
        super().__init__(file, encoding="latin1")  # python-2 pickles (the revisited files) hold latin-1 str
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if self.proto < 3 and self.fix_imports:  # python-2 names (__builtin__.set, copy_reg, ...)
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        if (module, name) not in ALLOWED_GLOBALS:
            raise DataError(f"{self.source}: refused to unpickle global {module}.{name} (a ground-truth file may "
                            f"hold only plain containers and numeric numpy arrays); the file is not a genuine one "
                            f"- download it again")
        return ALLOWED_GLOBALS[(module, name)]

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"{self.source}: refused to unpickle a persistent id; a ground-truth file may hold only "
                        f"plain containers and numeric numpy arrays")


def _check_size(obj: Any, source: str) -> None:
    """Walk ``obj`` counting every node as often as it is reached; refuse beyond :data:`MAX_NODES`."""
    stack, seen = [obj], 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > MAX_NODES:
            raise DataError(f"{source}: refused: the unpickled object expands to more than {MAX_NODES} nodes (shared "
                            f"or cyclic references); a ground-truth file is a plain tree - download it again")
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, (list, tuple, set, frozenset)):
            stack.extend(node)


def restricted_loads(data: bytes, source: str = "<bytes>") -> Any:
    """Unpickle ``data`` admitting only plain containers and numeric numpy arrays (see the module docstring)."""
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), source).load()
    except DataError:
        raise
    except _Refused as exc:
        raise DataError(f"{source}: refused to unpickle {exc}; a ground-truth file holds plain containers and "
                        f"numeric arrays only - download it again") from None
    except RecursionError:
        raise DataError(f"{source}: refused: nested too deeply to unpickle; download the file again") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            ImportError, KeyError, UnicodeDecodeError, OverflowError, MemoryError, struct.error) as exc:
        raise DataError(f"{source}: not a readable pickle ({type(exc).__name__}); download the file again") from None
    _check_size(obj, source)
    return obj


def restricted_load(path: str | Path) -> Any:
    """:func:`restricted_loads` of the file ``path`` (a missing file is a one-line DataError)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    return restricted_loads(data, str(path))


