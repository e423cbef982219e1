"""Faults a simulated drive can be given, at start (plant file ``faults:``) or at run time.

Every fault acts on one drive (one unit id) and is served by ``hil.server``:

==============  ==========================================================================
``timeout``     no reply at all
``slow``        the reply comes ``delay_s`` late
``exception``   a Modbus exception reply with ``code`` (default 4, server device failure)
``drop``        Modbus TCP: the connection is closed instead of replying; RTU: no reply
``restart``     the drive reboots: silent for ``duration_s``, then its counters start again
                from zero; clears itself
``garbage``     random bytes instead of the reply
``truncated``   the reply cut short
``stuck``       every register frozen at its value when the fault began
``nan``         power reads NaN (float points) or the type's "not available" value
``implausible`` power multiplied by ``factor`` (default 1000): a wrong scale
``noise``       line noise: one bit of the reply flipped (on RTU a CRC error), per request
                with ``probability`` (default 0.3)
==============  ==========================================================================

``probability`` (default 1) makes any wire fault hit only that share of requests.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from enum import Enum

from agent.config.yamlsource import Section


class Fault(Enum):
    """What goes wrong with a simulated drive."""

    TIMEOUT = "timeout"
    SLOW = "slow"
    EXCEPTION = "exception"
    DROP = "drop"
    RESTART = "restart"
    GARBAGE = "garbage"
    TRUNCATED = "truncated"
    STUCK = "stuck"
    NAN = "nan"
    IMPLAUSIBLE = "implausible"
    NOISE = "noise"

    @property
    def on_wire(self) -> bool:
        """True for faults of the exchange; False for faults of the values served."""
        return self not in (Fault.STUCK, Fault.NAN, Fault.IMPLAUSIBLE)


_DEFAULT_PROBABILITY = {Fault.NOISE: 0.3}
_PARAMS = {"delay_s", "code", "probability", "factor", "duration_s"}


@dataclass(frozen=True)
class FaultSpec:
    """One fault and its parameters."""

    kind: Fault
    delay_s: float = 0.5  # slow
    code: int = 4  # exception
    probability: float = 1.0  # wire faults: share of requests hit
    factor: float = 1000.0  # implausible
    duration_s: float = 2.0  # restart

    @classmethod
    def make(cls, kind: Fault, **params: float) -> FaultSpec:
        """A fault with parameters checked; ValueError names a bad one."""
        unknown = set(params) - _PARAMS
        if unknown:
            raise ValueError(f"unknown fault parameter(s) {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(sorted(_PARAMS))}")
        values: dict[str, float] = {"probability": _DEFAULT_PROBABILITY.get(kind, 1.0), **params}
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if not 0.0 <= values["probability"] <= 1.0:
            raise ValueError(f"probability must be in [0, 1], got {values['probability']}")
        if values.get("delay_s", 0.0) < 0 or values.get("duration_s", 0.0) < 0:
            raise ValueError("delay_s and duration_s must not be negative")
        code = values.get("code", 4)
        if code != int(code) or not 1 <= code <= 255:
            raise ValueError(f"code must be a Modbus exception code 1..255, got {code}")
        if "code" in values:
            values["code"] = int(code)
        return cls(kind, **values)  # type: ignore[arg-type]

    def hits(self, rng: random.Random) -> bool:
        """True if this request is hit (always, at probability 1)."""
        return self.probability >= 1.0 or rng.random() < self.probability


@dataclass
class ActiveFault:
    """A fault in force on a drive, with the time it began (simulation clock)."""

    spec: FaultSpec
    since: float
    state: dict[str, float] = field(default_factory=dict)


def parse_faults(sec: Section, key: str = "faults") -> tuple[FaultSpec, ...]:
    """A plant file's list of faults for one drive; problems are recorded, bad entries dropped."""
    specs: list[FaultSpec] = []
    for item in sec.sections(key, required=False):
        item.check_keys({"kind", *_PARAMS})
        kind = item.choice("kind", Fault)
        params = {name: item.raw(name) for name in sorted(_PARAMS) if item.has(name)}
        if kind is None:
            continue
        try:
            specs.append(FaultSpec.make(kind, **params))
        except ValueError as exc:
            item.error(None, str(exc))
    return tuple(specs)
