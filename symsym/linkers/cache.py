"""Kernels on disk, keyed by their source: a second process pays a load, not a compile.

Each kernel's module text is written once to ``<cache dir>/k<hash>.py``, the
hash being that of the text (and numba's version), and imported from there
with ``@numba.njit(cache=True)``, so numba keeps the machine code next to it
(``__pycache__``) and finds it again in any later process. Within a process,
:data:`LOADED` maps the hash to the compiled function, so a kernel is
imported once however many graphs use it.

The directory is ``$TWOGRAD_CACHE_DIR`` if set, else ``twograd/numba`` under
``$XDG_CACHE_HOME`` (``~/.cache``). Deleting it is always safe.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from pathlib import Path

__all__ = ["LOADED", "cache_dir", "load"]

#: hash of a kernel's source -> its numba dispatcher, for this process
LOADED: dict[str, object] = {}


def cache_dir() -> Path:
    """Where kernels and their machine code live (read on every call, so tests may redirect it)."""
    own = os.environ.get("TWOGRAD_CACHE_DIR")
    if own:
        return Path(own)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "twograd" / "numba"


def key(source: str) -> str:
    import numba
    return hashlib.sha256(f"{numba.__version__}\n{source}".encode()).hexdigest()[:24]


def load(source: str):
    """The compiled kernel (a numba dispatcher, ``kernel`` in ``source``) for this source."""
    k = key(source)
    fn = LOADED.get(k)
    if fn is not None:
        return fn
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"k{k}.py"
    if not path.exists() or path.read_text() != source:
        tmp = folder / f".k{k}.{os.getpid()}.tmp"
        tmp.write_text(source)
        os.replace(tmp, path)  # atomic: a concurrent process sees the whole file or none
    name = f"twograd_kernel_{k}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # numba's cache looks the module up by name
    spec.loader.exec_module(module)
    fn = module.kernel
    LOADED[k] = fn
    return fn
