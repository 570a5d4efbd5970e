"""The native linker on whichever numba/llvmlite is installed, and what the project says it was tested with.

The LLVM scalar-kernel path feeds each llvmlite call whose signature changed between releases what the
installed release names (llvmlite 0.50 dropped ``size_level``). The kernels themselves are checked in
tests/test_llvm_scalar.py; CI runs both on the oldest llvmlite the ``native`` extra allows (the peers' pin)
and on the newest a fresh install resolves."""

from __future__ import annotations

import ctypes
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

from benchmarks.cli import NATIVE_TESTED, main
from symsym.linkers.llvm import jit as llvm_jit


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


def test_list_and_the_readme_name_the_tested_numba_and_the_installed_one(capsys):
    pytest.importorskip("numba")
    assert main(["list"]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("native linker")]
    assert f"numba {version('numba')}, llvmlite {version('llvmlite')}" in line and NATIVE_TESTED in line
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    quick_start = readme.split("## Quick start")[1].split("\n## ")[0]
    assert NATIVE_TESTED in quick_start
