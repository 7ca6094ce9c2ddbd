"""Builds qsim._C, the fused CPU quantization kernels, with pybind11 (no libtorch linked).

Why pybind11 and not a torch C++ extension: it builds in seconds instead of ~40 s, installs in one
`pip install` step (no --no-build-isolation, no second torch in the build environment) and does not
tie the binary to one torch ABI. The Python layer validates tensors and passes raw pointers.

The kernels are compiled for this machine's vector units (-march=native): quantization is
memory-bound only when vectorised. Set QSIM_PORTABLE=1 to build a portable binary instead.
The named formats (formats/), accelerator descriptions (hw_models/) and CUDA sources install as package data.
"""
import glob
import os

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup

flags = ["-O3", "-fopenmp", "-fno-math-errno", "-std=c++17"]
if os.environ.get("QSIM_PORTABLE", "0") != "1":
    flags.append("-march=native")

ext = Pybind11Extension(
    "qsim._C",
    sources=["csrc/bindings.cpp", *sorted(glob.glob("csrc/cpu/*.cpp"))],
    include_dirs=["csrc"],
    extra_compile_args=flags,
    extra_link_args=["-fopenmp"],
    depends=sorted(glob.glob("csrc/qsim/*.h") + glob.glob("csrc/cpu/*.h")),
)

setup(
    ext_modules=[ext],
    cmdclass={"build_ext": build_ext},
    packages=["qsim", "qsim.backends", "qsim.formats", "qsim.nn", "qsim.sweep", "qsim.hw", "qsim.data",
              "qsim.data.formats", "qsim.data.hw_models", "qsim.data.meta"],
    package_data={"qsim.data.formats": ["*.toml"], "qsim.data.hw_models": ["*.toml", "devices/*.toml"],
                  "qsim.data.meta": ["*.csv"],
                  # the CUDA kernels compile at first use (qsim/cuda.py), from these sources
                  "qsim.data": ["csrc/cuda/*.cu", "csrc/cuda/*.cuh", "csrc/qsim/*.h"]},
)
