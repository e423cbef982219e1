"""The kernel tests once more as plain Python (``NUMBA_DISABLE_JIT=1``), as stumpy does.

Compiled code is invisible to coverage and to Python's own checks; run uncompiled, every
line of a kernel executes as Python and its tests must still pass. Left out of that run:
this test itself (it would recurse), the checks that the public kernels are compiled and
how often (they are not, by design of the run), and the property tests on arbitrary inputs, which rely on
the compiled ``error_model="numpy"`` (a division by zero gives inf or NaN compiled, and
raises ``ZeroDivisionError`` in plain Python).
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO

LEFT_OUT = (
    "tests/kernels/test_pure_python.py",
    "tests/kernels/test_imports.py::test_public_api_is_exported_and_compiled",
    "tests/kernels/test_imports.py::test_a_kernel_called_with_constants_compiles_once_for_its_types",
    "tests/kernels/test_properties.py",
)


def test_the_kernel_tests_pass_as_plain_python():
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    deselect = [arg for path in LEFT_OUT for arg in ("--deselect", path)]
    result = subprocess.run(
        # One process (-n 0): its own workers would warm a cache it does not use.
        [sys.executable, "-m", "pytest", "-q", "-x", "-n", "0", "-p", "no:cacheprovider", "tests/kernels",
         *deselect],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "error" not in result.stdout.splitlines()[-1]
