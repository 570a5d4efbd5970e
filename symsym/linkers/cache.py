"""Kernels on disk, keyed by their source: a second process pays a load, not a compile.

Each kernel's module text is written once to ``<cache dir>/k<hash>.py``, the
hash being that of the text (and numba's version), and run from the text in
hand (the file is for reading and tracebacks); numba keeps the kernel's
machine code beside it (:mod:`.numba.diskcache`: ``k<hash>.kernel-kernel.py311.nbi``
and ``.nbc``) and finds it again in any later process. Within a process,
:data:`LOADED` maps the hash to the compiled function, so a kernel is
loaded once however many graphs use it.

The directory is ``$TWOGRAD_CACHE_DIR`` if set, else ``twograd/numba`` under
``$XDG_CACHE_HOME`` (``~/.cache``). Deleting it is always safe. It holds
every file twograd's kernels load: numba's own cache settings
(``NUMBA_CACHE_DIR``, ``NUMBA_CACHE_LOCATOR_CLASSES``) apply to numba's other
users, not to these kernels.

What is in it runs: numba's index and machine code (pickles) and the LLVM
object files. So, like any code cache, it must be the user's own, and is used
only when (:func:`cache_dir`) it is this user's, nobody else may write to it,
and nobody else may rename it or a folder above it away and put their own in
its place: every folder above is this user's or root's, and not writable by
others unless sticky (as ``/tmp``, where others may add entries but not
rename this user's). Missing folders are made 0o700. Otherwise kernels go to
a private temporary folder of this process (one warning says so). Every file
is written 0o600 whatever the umask, under a fresh private name renamed into
place (:func:`write_private`), and read (:func:`read_private`) only if it is
a plain file (a link is not followed) of this user's that nobody else may
write, checked on the opened file itself, so nothing can be swapped in
between the check and the read; any other file is dropped and compiled
again, with a warning. The content checks (the object files' and numba
files' digests) catch a torn or corrupt file, not tampering: that is what the
folder's privacy is for.
"""

from __future__ import annotations

import os
import secrets
import stat
import tempfile
import threading
import warnings
from pathlib import Path

__all__ = ["cache_dir", "configured_dir", "drop", "read_private", "write_private"]

#: configured folder that was refused -> the private temporary folder used instead (made once each)
_INSTEAD: dict[Path, Path] = {}
_LOCK = threading.Lock()
_POSIX = hasattr(os, "getuid")
#: opened without following a link in the last component, nor blocking on a planted FIFO, nor leaking
#: into a child process
_READ = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
_WRITE = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
          | getattr(os, "O_BINARY", 0))
_OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH


def configured_dir() -> Path:
    """The folder asked for (read on every call, so tests may redirect it)."""
    own = os.environ.get("TWOGRAD_CACHE_DIR")
    if own:
        return Path(own)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "twograd" / "numba"


def cache_dir() -> Path:
    """Where kernels and their machine code live: the configured folder (its real path, links resolved)
    when it is safe (see the module's docstring; made so if new), else a private temporary folder of this
    process."""
    folder = configured_dir()
    real = _safe(folder)
    if real is not None:
        return real
    with _LOCK:
        instead = _INSTEAD.get(folder)
        if instead is None:
            instead = _INSTEAD[folder] = Path(tempfile.mkdtemp(prefix="twograd-kernels-"))
            warnings.warn(f"twograd: the kernel cache folder {folder} is not private to this user (owned by "
                          f"another, writable by others, or in a folder that others may write to or that "
                          f"another user owns), and what it holds would run; kernels are compiled into "
                          f"{instead} for this process instead", RuntimeWarning, stacklevel=3)
    return instead


def _safe(folder: Path) -> Path | None:
    """``folder``'s real path if nobody but this user (and root) can change what it holds, else None."""
    try:
        _make(folder)
        real = Path(os.path.realpath(folder))
        st = os.stat(real)
    except OSError:
        return None
    if not _POSIX:  # no POSIX owners and modes: the platform's own folder rules apply
        return real
    uid = os.getuid()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & _OTHERS_WRITE:
        return None
    # a folder above that another may write to (or owns) lets them rename ours away and put theirs in its
    # place, unless it is sticky: then only the owner of an entry may rename it, and every entry on the
    # path is this user's or root's (checked one level up the loop)
    for parent in real.parents:
        try:
            st = os.stat(parent)
        except OSError:
            return None
        if st.st_uid not in (uid, 0) or (st.st_mode & _OTHERS_WRITE and not st.st_mode & stat.S_ISVTX):
            return None
    return real


def _make(folder: Path) -> None:
    """Make ``folder`` and any missing folder above it, each 0o700 (as the XDG spec asks of a cache)."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for f in reversed(missing):
        try:
            f.mkdir(mode=0o700)
        except FileExistsError:  # made meanwhile by a concurrent process
            pass


def drop(path: Path, why: str) -> None:
    """Remove a cache file that is not loaded (one warning says why): the kernel is compiled again."""
    warnings.warn(f"twograd: the kernel cache file {path} is {why}: not loaded, the kernel is compiled again",
                  RuntimeWarning, stacklevel=3)
    try:
        os.unlink(path)
    except OSError:
        pass


def read_private(path: Path) -> bytes | None:
    """The content of cache file ``path``, or None when there is none or it is not a plain file of this
    user's that nobody else may write (then it is dropped, with a warning). The checks are made on the
    opened file, so the file read is the file checked."""
    try:
        fd = os.open(path, _READ)
    except FileNotFoundError:
        return None
    except OSError as e:  # ELOOP: a link, which is not followed
        drop(path, f"not private to this user (it cannot be opened as a plain file: {e.strerror})")
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (_POSIX and (st.st_uid != os.getuid() or st.st_mode & _OTHERS_WRITE)):
            drop(path, f"not private to this user (mode {stat.filemode(st.st_mode)}, owner {st.st_uid})")
            return None
        return f.read()


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to cache file ``path`` readable and writable by this user only, whatever the umask,
    atomically (a concurrent process sees the whole file or none): under a fresh name that no file or
    link may already hold, then renamed."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, _WRITE, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
