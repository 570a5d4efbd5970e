"""Kernels on disk, keyed by their source: a second process pays a load, not a compile.

Each kernel's module text is written once to ``<cache dir>/k<hash>.py``, the
hash being that of the text (and numba's version), and imported from there
with ``@numba.njit(cache=True)``, so numba keeps the machine code next to it
(``__pycache__``) and finds it again in any later process. Within a process,
:data:`LOADED` maps the hash to the compiled function, so a kernel is
imported once however many graphs use it.

The directory is ``$TWOGRAD_CACHE_DIR`` if set, else ``twograd/numba`` under
``$XDG_CACHE_HOME`` (``~/.cache``). Deleting it is always safe.

What is in it runs: the kernel modules and their bytecode, numba's machine
code and index (pickles), the LLVM object files. So, like any code cache, it
must be the user's own: it is made with mode 0o700, and one that another
user owns, or that others may write to (``TWOGRAD_CACHE_DIR=/tmp/shared``),
is not used: kernels then go to a private temporary folder of this process
(one warning says so). The content checks (the source compared before
import, the object files' digest) catch corruption, not tampering.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
import threading
import warnings
from pathlib import Path

__all__ = ["LOADED", "cache_dir", "configured_dir", "load"]

#: hash of a kernel's source -> its numba dispatcher, for this process
LOADED: dict[str, object] = {}
#: configured folder that was refused -> the private temporary folder used instead (made once each)
_INSTEAD: dict[Path, Path] = {}
_LOCK = threading.Lock()


def configured_dir() -> Path:
    """The folder asked for (read on every call, so tests may redirect it)."""
    own = os.environ.get("TWOGRAD_CACHE_DIR")
    if own:
        return Path(own)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "twograd" / "numba"


def cache_dir() -> Path:
    """Where kernels and their machine code live: the configured folder when it is this user's own and
    nobody else may write to it (made so if new), else a private temporary folder of this process."""
    folder = configured_dir()
    if _private(folder):
        return folder
    with _LOCK:
        instead = _INSTEAD.get(folder)
        if instead is None:
            instead = _INSTEAD[folder] = Path(tempfile.mkdtemp(prefix="twograd-kernels-"))
            warnings.warn(f"twograd: the kernel cache folder {folder} is not private to this user (owned by "
                          f"another, or writable by others), and what it holds would run; kernels are compiled "
                          f"into {instead} for this process instead", RuntimeWarning, stacklevel=3)
    return instead


def _private(folder: Path) -> bool:
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = folder.stat()
    except OSError:
        return False
    if not hasattr(os, "getuid"):  # no POSIX owners and modes: the platform's own folder rules apply
        return True
    return st.st_uid == os.getuid() and not st.st_mode & 0o022


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
    path = folder / f"k{k}.py"
    if not path.exists() or path.read_text() != source:
        tmp = folder / f".k{k}.{os.getpid()}.{threading.get_ident()}.tmp"
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
