"""kernels/ stays pure: nothing from the service, the simulator, asyncio, logging or Modbus."""

import ast
from pathlib import Path

import kernels

FORBIDDEN = {"agent", "hil", "asyncio", "logging", "pymodbus"}


def test_kernels_import_nothing_forbidden():
    root = Path(kernels.__file__).parent
    files = sorted(root.glob("*.py"))
    assert len(files) >= 8
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"


def test_public_api_is_exported_and_compiled():
    for name in [
        "fit_pump_curves", "fit_fan_curves", "fit_system_curve", "fit_load_characteristic",
        "static_head_share", "rls_update", "head", "shaft_power", "efficiency",
        "operating_point", "min_speed_for_flow", "estimate_flow", "electrical_power",
        "stage_pumps", "characteristic_baseline_power", "table_baseline_power",
        "throttle_baseline_power", "constant_baseline_power", "baseline_power",
        "integrate_energy",
    ]:
        func = getattr(kernels, name)
        assert hasattr(func, "py_func"), f"{name} is not a Numba dispatcher"
        assert func.targetoptions.get("cache") is not False


def test_numba_policy():
    assert kernels.NUMBA_OPTIONS["cache"] is True
    assert kernels.NUMBA_OPTIONS["fastmath"] is False
    assert kernels.NUMBA_OPTIONS["error_model"] == "numpy"


def test_warmup_covers_the_public_kernels():
    timings = kernels.warmup()
    for name in ["fit_pump_curves", "stage_pumps", "integrate_energy", "rls_update",
                 "baseline_power", "estimate_flow", "min_speed_for_flow"]:
        assert name in timings
    assert all(t >= 0.0 for t in timings.values())


@kernels.jit
def _scaled(x: float, n: int) -> float:
    return x * n


@kernels.jit
def _twice_scaled(x: float) -> float:
    return _scaled(x, 2) + _scaled(x, 3)


def test_a_kernel_called_with_constants_compiles_once_for_its_types():
    """Numba would compile ``_scaled`` for Literal[int](2), Literal[int](3) and int64: three
    compiles where one serves (``_fit_collapsed`` twice per pump fit; issue 14's warm-up)."""
    assert _twice_scaled(1.5) == 7.5
    assert _scaled(1.5, 4) == 6.0  # from Python: the same types
    assert [str(sig) for sig in _scaled.signatures] == ["(float64, int64)"]
