"""Bad input at every boundary: random registers through the decode path, random configs and profiles.

The agent answers with a located ConfigError or a counted fault, never a traceback.
"""

from __future__ import annotations

import asyncio
import math
import random
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config import BusConfig, Transport, load_config
from agent.config.profile import BUILTIN_PROFILES, Quantity, load_profile
from agent.config.yamlsource import Issues
from agent.drive import DriveRuntime
from agent.errors import ConfigError, ImplausibleReadingError
from agent.modbus.codec import Order, encode
from agent.modbus.probe import Rating, judge
from agent.modbus.readplan import decode_blocks, plan_reads
from agent.poller import BusPoller
from tests.support import REPO

PROFILES = sorted(p.stem for p in BUILTIN_PROFILES.glob("*.yaml"))
SITE = """\
site: {name: s, grid_emission_factor_kg_per_kwh: 0.5, tariff: {currency: EUR, price_per_kwh: 0.2}}
buses:
  - {name: line, transport: rtu, device: /dev/ttyUSB0, baudrate: 19200, timeout_s: 0.2}
  - {name: gw, host: 127.0.0.1, port: 502}
drives:
  - {name: p1, bus: line, unit: 1, profile: sinamics-g120, rated_power_kw: 15, rated_speed_rpm: 1470,
     load: {kind: pump, rated_flow_m3h: 120, rated_head_m: 32}}
  - {name: f1, bus: gw, unit: 2, profile: danfoss-fc102, rated_power_kw: 11, rated_speed_rpm: 1460,
     load: {kind: fan, rated_flow_m3h: 30000, rated_pressure_pa: 800}, baseline: {method: constant}}
"""
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def drive_for(profile_name: str, tmp_path: Path) -> DriveRuntime:
    path = tmp_path / "site.yaml"
    path.write_text(SITE.replace("profile: sinamics-g120", f"profile: {profile_name}"))
    config = load_config(path)
    return DriveRuntime(config.drives[0], config.site, config.max_gap)


@FAST
@given(name=st.sampled_from(PROFILES), data=st.data())
def test_random_registers_through_the_real_decode_path_are_used_or_counted(tmp_path_factory, name, data):
    drive = drive_for(name, tmp_path_factory.mktemp("d"))
    blocks = plan_reads(drive.config.profile.points.values(), max_gap=10)
    registers = [data.draw(st.lists(st.integers(0, 0xFFFF), min_size=b.count, max_size=b.count))
                 for b in blocks]
    values = decode_blocks(blocks, registers)
    for t in range(3):
        try:
            reading = drive.accept(float(t), 1e9 + t, values)
        except ImplausibleReadingError as exc:
            assert drive.up is False and drive.errors[exc.kind] >= 1
            assert not drive.is_fresh(float(t))
        else:
            assert all(math.isfinite(v) for v in reading.values.values())
            assert abs(reading.power) <= 3 * drive.config.rated_power
            assert drive.is_fresh(float(t))
    for point in drive.config.profile.points.values():
        block = next(b for b in blocks if point in b.points)
        raw = registers[blocks.index(block)][point.address - block.start : point.end - block.start]
        judged = judge(point, raw, Rating(drive.config.rated_power, drive.config.rated_speed))
        assert all(isinstance(p, str) and p for p in judged.problems)


def test_a_poller_survives_a_drive_that_returns_nonsense(tmp_path):
    """A fake client answering random registers, wrong lengths and errors: the loop never dies."""
    from agent.errors import DriveProtocolError, DriveReplyError, DriveTimeoutError

    drive = drive_for("abb-acs580", tmp_path)
    rng = random.Random(7)

    class Nonsense:
        connected = True

        class stats:  # noqa: N801 - a stand-in for LineStats
            busy_s = 0.0
            last_exchange_s = 0.0

        async def connect(self):
            return None

        def close(self):
            return None

        async def read(self, unit, block):
            roll = rng.random()
            if roll < 0.1:
                raise DriveTimeoutError("silence")
            if roll < 0.2:
                raise DriveReplyError(3, rng.choice([2, 4, 6, 11]))
            if roll < 0.3:
                raise DriveProtocolError("garbled")
            if roll < 0.4:
                return [rng.randrange(65536) for _ in range(max(0, block.count - 1))]  # short
            return [rng.randrange(65536) for _ in range(block.count)]

    bus = BusConfig("gw", Transport.TCP, "x", 502, 0.05, 0.01, 0, 1.0)
    poller = BusPoller(bus, [drive], Nonsense(), clock=iter(range(10**6)).__next__)  # type: ignore[arg-type]

    async def cycles():
        for _ in range(300):
            await poller.poll_once()

    asyncio.run(cycles())
    assert drive.polls + sum(drive.errors.values()) > 0
    assert set(drive.errors) <= {"timeout", "exception_2", "exception_4", "exception_6", "exception_11",
                                 "protocol", "implausible", "stuck", "counter_reset"}


# --- configs and profiles ----------------------------------------------------------------------------

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12))
trees = st.recursive(scalars, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=5)),
    max_leaves=20)


def only_config_errors(path: Path) -> None:
    try:
        load_config(path)
    except ConfigError as exc:
        assert exc.issues and all(str(i.file) and i.field for i in exc.issues), exc


@FAST
@given(tree=trees)
def test_random_yaml_trees_give_located_config_errors(tmp_path_factory, tree):
    path = tmp_path_factory.mktemp("c") / "site.yaml"
    path.write_text(yaml.safe_dump(tree))
    only_config_errors(path)


def mutate(data, rng: random.Random, replacement):
    """Replace one random node of a YAML tree."""
    if isinstance(data, dict) and data and rng.random() < 0.8:
        key = rng.choice(list(data))
        return {**data, key: mutate(data[key], rng, replacement)}
    if isinstance(data, list) and data and rng.random() < 0.8:
        index = rng.randrange(len(data))
        return [*data[:index], mutate(data[index], rng, replacement), *data[index + 1 :]]
    return replacement


@FAST
@given(seed=st.integers(0, 2**32), replacement=trees)
def test_mutated_valid_configs_give_located_config_errors(tmp_path_factory, seed, replacement):
    base = yaml.safe_load(SITE)
    path = tmp_path_factory.mktemp("m") / "site.yaml"
    path.write_text(yaml.safe_dump(mutate(base, random.Random(seed), replacement)))
    only_config_errors(path)


@FAST
@given(name=st.sampled_from(PROFILES), seed=st.integers(0, 2**32), replacement=trees)
def test_mutated_profiles_are_rejected_with_located_issues_or_load(tmp_path_factory, name, seed, replacement):
    base = yaml.safe_load((BUILTIN_PROFILES / f"{name}.yaml").read_text())
    folder = tmp_path_factory.mktemp("p")
    path = folder / "mutant.yaml"
    path.write_text(yaml.safe_dump(mutate(base, random.Random(seed), replacement)))
    issues = Issues()
    profile = load_profile(path, issues)
    assert profile is not None or issues.items  # a profile refused says why
    assert all(i.field for i in issues.items)
    site = folder / "site.yaml"
    site.write_text(SITE.replace("profile: sinamics-g120", f"profile: {path}"))
    only_config_errors(site)


def test_encoded_extremes_of_every_point_decode_without_errors():
    for name in PROFILES:
        profile = load_profile(BUILTIN_PROFILES / f"{name}.yaml", Issues())
        for point in profile.points.values():
            low, high = point.dtype.bounds
            for raw in (low, high, 0):
                words = encode(float(raw) if not point.dtype.is_float else math.inf, point.dtype,
                               point.word_order, Order.BIG if point.byte_order is Order.BIG else Order.LITTLE)
                judge(point, words)
    assert (REPO / "configs" / "profiles").is_dir() and Quantity.POWER
