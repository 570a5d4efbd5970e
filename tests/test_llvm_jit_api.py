"""The LLVM scalar-kernel path on whichever llvmlite is installed: the calls whose signature changed
between releases are fed what the installed release names (llvmlite 0.50 dropped ``size_level``).

The kernels themselves are checked in tests/test_llvm_scalar.py; CI runs both on the oldest llvmlite the
``native`` extra allows (the peers' pin) and on the newest a fresh install resolves."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from symsym.linkers import llvm_jit


def test_tuning_options_are_given_only_what_the_release_names():
    calls = []

    def before_050(speed_level=2, size_level=0):
        calls.append({"speed_level": speed_level, "size_level": size_level})

    def since_050(speed_level=2):
        calls.append({"speed_level": speed_level})

    llvm_jit.tuning_options(before_050)
    llvm_jit.tuning_options(since_050)
    assert calls == [{"speed_level": llvm_jit.OPT_LEVEL, "size_level": 0}, {"speed_level": llvm_jit.OPT_LEVEL}]


def test_the_installed_llvmlite_compiles_and_runs_a_kernel_at_the_chosen_level():
    llvm = pytest.importorskip("llvmlite.binding")
    assert llvm_jit.tuning_options(llvm.create_pipeline_tuning_options).speed_level == llvm_jit.OPT_LEVEL
    jit = llvm_jit._jit()
    obj = jit.compile("define double @twograd_api_probe(double %x) {\n"
                      "  %y = fmul double %x, 3.0\n  ret double %y\n}\n")
    address = jit.address(obj, "twograd_api_probe")
    assert address
    probe = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_double)(address)
    assert probe(np.pi) == np.pi * 3.0
