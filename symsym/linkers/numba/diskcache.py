"""numba's disk cache for twograd's kernels: in the kernel cache folder, read only when checked.

A numba function compiled with ``cache=True`` finds its files through a chain
of locators that the environment steers (``NUMBA_CACHE_DIR``,
``NUMBA_CACHE_LOCATOR_CLASSES``, a writable ``__pycache__``, then
``~/.cache/numba``), and unpickles whatever index and data it finds there:
with ``NUMBA_CACHE_DIR`` pointed at a shared folder, a pickle planted there
at the predictable path would run. So a kernel (compiled without
``cache=True``) gets this cache instead (:func:`attach`): numba's own caching
machinery (the index keyed by signature and target, the machine code
serialised and rebuilt), with the files kept beside the kernel's module in
the kernel cache folder (:mod:`symsym.linkers.cache`) whatever the
environment says, written and read through that module's ``write_private``
and ``read_private``, each file headed by a digest of its name and content.
A torn or corrupt file (a crash mid-write, a full disk) fails the digest, or
does not unpickle or rebuild, and is dropped with one warning: the kernel is
compiled again and the entry rewritten, never left broken. A cache file that
cannot be written costs the next process a compile, nothing else.

Only the public shape of numba's cache classes is relied on (a ``Cache``
subclass names its ``CacheImpl``; the impl gives a locator and a file name
base; the cache reads and writes through an object with ``load``, ``save``
and ``flush``), the same from numba 0.65 to 0.68.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import pickle
import sys
import types
from pathlib import Path

import numba
from numba.core import caching
from numba.core.serialize import dumps

from .. import cache

__all__ = ["LOADED", "attach", "key", "load"]

#: hash of a kernel's source -> its numba dispatcher, for this process
LOADED: dict[str, object] = {}

_MAGIC = b"twograd-numba-cache 1 "


def key(source: str) -> str:
    return hashlib.sha256(f"{numba.__version__}\n{source}".encode()).hexdigest()[:24]


def load(source: str):
    """The compiled kernel (a numba dispatcher, ``kernel`` in ``source``) for this source."""
    k = key(source)
    fn = LOADED.get(k)
    if fn is not None:
        return fn
    folder = cache.cache_dir()
    path = folder / f"k{k}.py"
    text = source.encode()
    if cache.read_private(path) != text:
        try:
            cache.write_private(path, text)
        except OSError:
            pass  # the text runs from memory: the file is for tracebacks and readers
    name = f"twograd_kernel_{k}"
    module = types.ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module  # numba's cached code looks the module up by name
    exec(compile(source, str(path), "exec"), module.__dict__)
    fn = module.kernel
    attach(fn)
    LOADED[k] = fn
    return fn


def attach(dispatcher) -> None:
    """Give a kernel's numba dispatcher its disk cache beside its module, before it compiles or loads
    anything (a cache numba made for ``cache=True`` is replaced unused)."""
    dispatcher._cache = _KernelCache(dispatcher.py_func)


class _Locator:
    """Where a kernel's files are: beside its module ``k<hash>.py``, whose name is the source's hash (so
    the name is the stamp: another source is another file)."""

    def __init__(self, py_file: str):
        self._py_file = py_file  # (numba's warning about a function it cannot cache names it)
        self._folder = os.path.dirname(py_file)

    def ensure_cache_path(self) -> None:
        """Nothing to do: ``cache.cache_dir()`` made and checked the folder."""

    def get_cache_path(self) -> str:
        return self._folder

    def get_source_stamp(self) -> str:
        return os.path.basename(self._py_file)

    def get_disambiguator(self) -> str:
        return "kernel"


class _Impl(caching.CompileResultCacheImpl):
    """numba's compile-result cache, located by :class:`_Locator` alone (numba's chain of locators, and
    the environment variables that steer it, are not consulted)."""

    def __init__(self, py_func):
        self._lineno = py_func.__code__.co_firstlineno
        self._locator = _Locator(py_func.__code__.co_filename)
        modname = os.path.splitext(os.path.basename(py_func.__code__.co_filename))[0]
        self._filename_base = self.get_filename_base(f"{modname}.{py_func.__qualname__}",
                                                     getattr(sys, "abiflags", ""))


class _KernelCache(caching.FunctionCache):
    """numba's per-function cache, on :class:`_Files`; a hit that does not rebuild is a miss."""

    _impl_class = _Impl

    def __init__(self, py_func):
        super().__init__(py_func)
        self._cache_file = _Files(Path(self._impl.locator.get_cache_path()), self._impl.filename_base,
                                  self._impl.locator.get_source_stamp())

    def load_overload(self, sig, target_context):
        self._cache_file.loaded = None
        try:
            return super().load_overload(sig, target_context)
        except Exception as e:  # whatever a damaged entry raises, it is compiled again
            path = self._cache_file.loaded
            if path is None:
                raise
            cache.drop(path, f"damaged (it does not rebuild: {type(e).__name__}: {e})")
            return None


class _Files:
    """numba's index and data files (``<base>.nbi``, ``<base>.<n>.nbc``), each a digest line and a pickle,
    in numba's index-data layout: the index maps a key (signature, target, bytecode hash) to a data file."""

    def __init__(self, folder: Path, base: str, stamp: str):
        self._folder = folder
        self._index = folder / f"{base}.nbi"
        self._base = base
        self._stamp = (numba.__version__, stamp)
        #: the data file read by the last load (numba compiles under its global lock)
        self.loaded: Path | None = None

    def load(self, key):
        name = self._overloads().get(key)
        self.loaded = None if name is None else self._folder / name
        return None if name is None else self._read(self.loaded)

    def save(self, key, data) -> None:
        overloads = self._overloads()
        name = overloads.get(key)
        try:
            if name is None:
                used = set(overloads.values())
                name = next(n for n in (f"{self._base}.{i}.nbc" for i in itertools.count(1)) if n not in used)
                overloads[key] = name
                self._write(self._folder / name, data)
                self._write(self._index, (self._stamp, overloads))
            else:
                self._write(self._folder / name, data)
        except OSError:
            pass  # a read-only or full cache folder costs the next process a compile, nothing else

    def flush(self) -> None:
        try:
            self._write(self._index, (self._stamp, {}))
        except OSError:
            pass

    def _overloads(self) -> dict:
        got = self._read(self._index)
        if not (isinstance(got, tuple) and len(got) == 2 and got[0] == self._stamp and isinstance(got[1], dict)):
            return {}  # none yet, or another numba's or source's (rewritten on the next save)
        return got[1]

    def _read(self, path: Path):
        raw = cache.read_private(path)
        if raw is None:
            return None
        head, sep, body = raw.partition(b"\n")
        if not sep or head != _MAGIC + _digest(path.name, body):
            cache.drop(path, "damaged (its digest does not match its content)")
            return None
        try:
            return pickle.loads(body)
        except Exception as e:  # a whole file of a numba that pickled classes this one lacks
            cache.drop(path, f"damaged (it does not unpickle: {type(e).__name__}: {e})")
            return None

    def _write(self, path: Path, obj) -> None:
        body = dumps(obj)
        cache.write_private(path, _MAGIC + _digest(path.name, body) + b"\n" + body)


def _digest(name: str, body: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + body).hexdigest().encode()
