"""LLVM IR text -> a Python builtin function, through object code cached on disk.

:func:`load` takes a module's IR (one function ``@twograd_<key>`` with
CPython's ``METH_FASTCALL`` signature, written by :mod:`.chains`) and
returns it as a builtin function object, the cheapest thing CPython can call
(no ctypes argument conversion, no shared buffer: each call's values live in
its own registers, so threads calling one kernel never share memory).
Measured on ``sin(x) * 2.0`` from a 0-d array: 44 ns a call as a builtin,
320 ns through ctypes with preallocated buffers (which threads would share),
520 ns through ctypes with the double passed by value.

The object code is cached in :func:`.cache.cache_dir` as ``l<key>.o``,
``key`` being a hash of the IR text, llvmlite's version, the target (triple,
CPU, features), the optimisation level and the Python ABI. A file holds a
header line with the sha256 of the key and the object code: a torn, corrupt
or foreign file (another key's code renamed, a truncated write) fails the
check and is compiled again and rewritten (with a warning), never loaded; one
that passes it but does not define the function is compiled again too. It is
written 0o600 and read only when it is a plain file of the user's that
nobody else may write (``cache.read_private``). The digest has no
secret, so it guards against accidents, not against someone who can write
the folder: that is what :mod:`.cache`'s check that the folder is private
to the user is for, as for any code cache. Within a process,
:data:`LOADED` maps the key to the function, so a kernel loads once.
"""

from __future__ import annotations

import ctypes
import hashlib
import inspect
import sys
import threading

from .. import cache

__all__ = ["LOADED", "OPT_LEVEL", "key", "load"]

#: the new pass manager's speed level (1: O1, 2: O2); O1 (measured on a 30,000-node chain with its gradient):
#: the run time is the same (the chain's libm calls are the time) and the compile is shorter
OPT_LEVEL = 1
#: key -> the builtin function, for this process (with what keeps its code alive, in _KEEP)
LOADED: dict[str, object] = {}
_KEEP: list = []
#: llvmlite releases the GIL inside LLVM: one compile or load at a time, and one engine per process (an
#: engine made twice by two threads would free the code of the one dropped)
_LOCK = threading.RLock()
_MAGIC = b"twograd-llvm-object 1 "
_METH_FASTCALL = 0x0080
#: the CPython functions a kernel calls, resolved in this process by name (their addresses are given to
#: LLVM explicitly, so linking never depends on how the interpreter exports its symbols)
CAPI = ("PyFloat_AsDouble", "PyObject_IsTrue", "PyErr_Occurred", "PyErr_BadArgument", "PyFloat_FromDouble",
        "PyBool_FromLong", "PyTuple_New", "PyTuple_SetItem", "Py_DecRef")


class _MethodDef(ctypes.Structure):
    _fields_ = [("ml_name", ctypes.c_char_p), ("ml_meth", ctypes.c_void_p), ("ml_flags", ctypes.c_int),
                ("ml_doc", ctypes.c_char_p)]


class _Jit:
    """The process's LLVM state, made on first use: the target machine and one MCJIT engine.

    llvmlite changes its Python API between releases (0.50 dropped ``size_level`` from the pipeline
    tuning options; ``initialize()`` now raises, LLVM initialising itself), so each call that has
    changed, or that may go the same way, goes through a probe of what the installed llvmlite offers
    (:func:`tuning_options`, :func:`_initialize`) rather than a test of its version number.
    """

    def __init__(self):
        import llvmlite
        import llvmlite.binding as llvm

        _initialize(llvm)
        self.llvm = llvm
        triple = llvm.get_process_triple()
        cpu, features = llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()
        self.tm = llvm.Target.from_triple(triple).create_target_machine(
            cpu=cpu, features=features, opt=2, reloc="static", codemodel="jitdefault")
        self.engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), self.tm)
        self.target = (f"llvmlite {llvmlite.__version__} llvm {llvm.llvm_version_info} {triple} {cpu} {features} "
                       f"O{OPT_LEVEL} {sys.implementation.cache_tag} {sys.maxsize}")
        for name in CAPI:
            llvm.add_symbol(name, ctypes.cast(getattr(ctypes.pythonapi, name), ctypes.c_void_p).value)

    def compile(self, text: str) -> bytes:
        """Object code for ``text``, optimised at :data:`OPT_LEVEL`."""
        llvm = self.llvm
        mod = llvm.parse_assembly(text)
        mod.verify()
        pb = llvm.create_pass_builder(self.tm, tuning_options(llvm.create_pipeline_tuning_options))
        pb.getModulePassManager().run(mod, pb)
        return self.tm.emit_object(mod)

    def address(self, obj: bytes, name: str) -> int:
        self.engine.add_object_file(self.llvm.ObjectFileRef.from_data(obj))
        self.engine.finalize_object()
        return self.engine.get_function_address(name)


#: what the kernels are optimised for, as pipeline tuning options; a release that lacks an option (llvmlite
#: 0.50 has no ``size_level``, and optimises for speed only) is given the others
_TUNING = {"speed_level": OPT_LEVEL, "size_level": 0}


def tuning_options(create):
    """``create(**options)`` with those of :data:`_TUNING` that ``create`` (llvmlite's
    ``create_pipeline_tuning_options``) names: the new pass manager's tuning on any llvmlite."""
    accepted = inspect.signature(create).parameters
    return create(**{k: v for k, v in _TUNING.items() if k in accepted})


def _initialize(llvm) -> None:
    """The native target and its object-code printer, initialised where this llvmlite still offers the calls
    (one that initialises LLVM itself may drop them, as it did ``initialize()``)."""
    for name in ("initialize_native_target", "initialize_native_asmprinter"):
        init = getattr(llvm, name, None)
        if init is not None:
            init()


_JIT: _Jit | None = None


def _jit() -> _Jit:
    global _JIT
    if _JIT is None:
        with _LOCK:
            if _JIT is None:
                _JIT = _Jit()
    return _JIT


def key(text: str) -> str:
    """The cache key of a kernel's IR (with its function named ``@kernel``) on this target."""
    return hashlib.sha256(f"{_jit().target}\n{text}".encode()).hexdigest()[:24]


def load(text: str, k: str, name: str):
    """The builtin function ``name`` (``METH_FASTCALL``) compiled from IR ``text`` with cache key ``k``."""
    fn = LOADED.get(k)
    if fn is not None:
        return fn
    with _LOCK:
        fn = LOADED.get(k)
        if fn is not None:
            return fn
        jit = _jit()
        path = cache.cache_dir() / f"l{k}.o"
        obj = read_checked(path, k)
        address = jit.address(obj, name) if obj is not None else 0
        if not address:  # not in the cache, or a file that passed the digest but lacks the function
            obj = jit.compile(text)
            address = jit.address(obj, name)
            if not address:
                raise RuntimeError(f"LLVM compiled kernel {name} but the engine has no address for it")
            write_checked(path, k, obj)
        fn = _builtin(address, name)
        LOADED[k] = fn
    return fn


def _digest(k: str, obj: bytes) -> bytes:
    return hashlib.sha256(k.encode() + b"\n" + obj).hexdigest().encode()


def read_checked(path, k: str) -> bytes | None:
    """The object code in ``path`` if the file is private to the user (``cache.read_private``), whole and
    written for key ``k``, else None (a file that fails the check is dropped, with a warning)."""
    data = cache.read_private(path)
    if data is None:
        return None
    head, sep, obj = data.partition(b"\n")
    if not sep or head != _MAGIC + _digest(k, obj):
        cache.drop(path, "damaged (its digest does not match its key and content)")
        return None
    return obj


def write_checked(path, k: str, obj: bytes) -> None:
    """Write ``obj`` for key ``k``, private to the user and atomically (``cache.write_private``)."""
    try:
        cache.write_private(path, _MAGIC + _digest(k, obj) + b"\n" + obj)
    except OSError:
        pass  # a read-only cache folder costs the next process a compile, nothing else


#: CPython's constructor of builtin function objects, with a prototype of our own (not set on the shared
#: ``ctypes.pythonapi`` attribute, which other code may use with its own)
_NEW_BUILTIN = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.py_object, ctypes.py_object)(
    ("PyCFunction_NewEx", ctypes.pythonapi))


def _builtin(address: int, name: str):
    """A builtin function object whose C function is at ``address`` (kept alive with its method record)."""
    record = _MethodDef(name.encode(), address, _METH_FASTCALL, None)
    fn = _NEW_BUILTIN(ctypes.addressof(record), None, None)
    _KEEP.append(record)
    return fn
