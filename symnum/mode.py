"""Grad mode: whether ops on tensors are recorded on the tape, per thread.

A tape is only worth recording when someone will sweep it backwards, so
evaluation code (optimiser steps, finite differences, inference) turns
recording off with :class:`no_grad`. The flag is thread-local, as in PyTorch:
one thread's ``no_grad`` never silences another thread's tape.
"""

from __future__ import annotations

import functools
import threading


class _Mode(threading.local):
    def __init__(self):
        self.enabled = True
        self.depth = 0  # how many functional transforms (grad, jacobian, ...) are running


MODE = _Mode()


def is_grad_enabled() -> bool:
    """Whether ops on tensors that require grad are recorded (this thread)."""
    return MODE.enabled


class set_grad_enabled:
    """Turn recording on or off inside a ``with`` block (or a decorated function)."""

    __slots__ = ("mode", "prev")

    def __init__(self, mode: bool):
        self.mode = bool(mode)
        self.prev = True

    def __enter__(self):
        self.prev = MODE.enabled
        MODE.enabled = self.mode
        return self

    def __exit__(self, *exc):
        MODE.enabled = self.prev
        return False

    def __call__(self, fn):
        mode = self.mode

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with set_grad_enabled(mode):
                return fn(*args, **kwargs)
        return wrapper


class no_grad(set_grad_enabled):
    """Record nothing: results of ops never require grad inside this block."""

    __slots__ = ()

    def __init__(self):
        super().__init__(False)


class enable_grad(set_grad_enabled):
    """Record again, even inside a :class:`no_grad` block."""

    __slots__ = ()

    def __init__(self):
        super().__init__(True)
