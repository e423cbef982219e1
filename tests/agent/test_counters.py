"""Counters that never go down and a wall clock that may lie: negative power, held hours, clock steps."""

from __future__ import annotations

import logging
import math
import textwrap
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from agent.config import load_config
from agent.config.profile import Quantity
from agent.config.schedule import hour_start
from agent.drive import COUNTER_RESET, DriveRuntime, ImplausibleReadingError
from agent.energy.account import EnergySample
from agent.metrics import AgentCollector, ClockCollector
from agent.motor_tables import losses, shaft_from_electrical, table_efficiency
from agent.wallclock import STEP_S, UNSYNCED_HOLD_S, WallClock, timesyncd_synchronized
from tests.agent.test_energy import T0, account
from tests.support import DRIVE_DATA, REPO

RATED_W = 15_000.0  # chw-pump-1


def generic_variant(tmp_path: Path, name: str, old: str, new: str) -> str:
    """The generic map without its energy counter, named ``name``, one line's ``old`` made ``new``."""
    (tmp_path / "profiles").mkdir(exist_ok=True)
    lines = (REPO / "configs" / "profiles" / "generic.yaml").read_text().splitlines()
    kept = [line.replace("name: generic", f"name: {name}").replace(old, new)
            for line in lines if not line.lstrip().startswith("energy:")]
    (tmp_path / "profiles" / f"{name}.yaml").write_text("\n".join(kept) + "\n")
    return name


def regenerative_profile(tmp_path: Path) -> str:
    """The generic map without its energy counter, for a drive that feeds energy back."""
    return generic_variant(tmp_path, "generic-afe", "negative_power: implausible",
                           "negative_power: regenerated")


def a_drive(tmp_path: Path, profile: str = "generic") -> DriveRuntime:
    text = f"""\
site: {{name: s, grid_emission_factor_kg_per_kwh: 0.5, tariff: {{currency: EUR, price_per_kwh: 0.2}}}}
polling: {{max_gap_s: 5}}
buses: [{{name: gw, host: 127.0.0.1, port: 502}}]
drives:
  - name: chw-pump-1
    bus: gw
    unit: 1
    profile: {profile}
""" + "".join(f"    {line}\n" for line in textwrap.dedent(DRIVE_DATA["chw-pump-1"]).splitlines())
    path = tmp_path / "site.yaml"
    path.write_text(text)
    config = load_config(path)
    return DriveRuntime(config.drives[0], config.site, config.max_gap)


def poll(power_w: float, energy_j: float | None = None, speed_rpm: float = 1200.0) -> dict[Quantity, float]:
    values = {Quantity.SPEED: speed_rpm * 2 * math.pi / 60, Quantity.POWER: power_w}
    if energy_j is not None:
        values[Quantity.ENERGY] = energy_j
    return values


# -- negative power -------------------------------------------------------------------------------


def test_negative_power_is_refused_and_counted_by_default_and_energy_never_goes_down(tmp_path):
    drive = a_drive(tmp_path)  # the generic profile: negative_power: implausible (the default)
    energies = []
    for t, power in enumerate((5_000.0, 5_000.0, -5_000.0, -10_000.0, -10_000.0, 5_000.0, 5_000.0)):
        try:
            drive.accept(float(t), T0 + t, poll(power))
        except ImplausibleReadingError as exc:
            assert "negative" in str(exc) and "negative_power" in str(exc)
        energies.append(drive.account.totals.energy_j)
    assert energies == sorted(energies)  # was 5 kJ, then 0, then -10 kJ, -20 kJ ... on the old code
    assert drive.errors["implausible"] == 3
    assert drive.account.totals.energy_j == pytest.approx(2 * 5_000.0)  # nothing across the refusals
    assert drive.account.totals.gaps == 0 and drive.account.totals.regenerated_j == 0.0


def test_standstill_noise_below_zero_is_zero_not_a_fault(tmp_path):
    drive = a_drive(tmp_path)
    for t in range(3):
        reading = drive.accept(float(t), T0 + t, poll(-0.004 * RATED_W, speed_rpm=0.0))
        assert reading.power == 0.0
    assert drive.up and not drive.errors
    assert drive.account.totals.energy_j == 0.0


def test_a_regenerating_drive_books_fed_back_energy_apart_and_never_as_savings(tmp_path):
    drive = a_drive(tmp_path, regenerative_profile(tmp_path))
    # 10 kW, then linearly down to -10 kW (crossing zero mid-interval), held 1 s, then back to 10 kW.
    for t, power in enumerate((10_000.0, 10_000.0, -10_000.0, -10_000.0, 10_000.0)):
        drive.accept(float(t), T0 + t, poll(power))
    totals = drive.account.totals
    assert not drive.errors
    # Drawn: 10 kJ + two half-second ramps of 2.5 kJ; fed back: two 2.5 kJ ramps and 10 kJ held.
    assert totals.energy_j == pytest.approx(15_000.0)
    assert totals.regenerated_j == pytest.approx(15_000.0)
    drive.account.close_window()
    assert totals.saved_stipulated_j - totals.penalty_stipulated_j <= totals.baseline_energy_j
    assert totals.saved_stipulated_j == pytest.approx(totals.baseline_energy_j - totals.energy_j)
    registry = CollectorRegistry()
    registry.register(AgentCollector([drive], "EUR"))
    labels = {"drive": "chw-pump-1"}
    assert registry.get_sample_value("vfd_energy_regenerated_joules_total", labels) == pytest.approx(15_000.0)
    assert registry.get_sample_value("vfd_power_watts", labels) == 10_000.0
    plain = a_drive(tmp_path)  # a profile that refuses negative power has no regenerated series
    registry = CollectorRegistry()
    registry.register(AgentCollector([plain], "EUR"))
    assert registry.get_sample_value("vfd_energy_regenerated_joules_total", labels) is None


def output_profile(tmp_path: Path) -> str:
    """The generic map read on the drive's output side (every shipped vendor profile's), no counter."""
    return generic_variant(tmp_path, "generic-output", "power_measured_at: drive_input",
                           "power_measured_at: drive_output")


def test_an_output_reading_drives_savings_are_net_of_its_modelled_losses_and_counted(tmp_path):
    """The same polls read on each side: the output drive's energy the same, its saving less by the model.

    The no-VFD baseline's saving was high by the drive's own losses, which an output reading
    leaves out; a mains reading has them in it and nothing changes.
    """
    output, mains = a_drive(tmp_path, output_profile(tmp_path)), a_drive(tmp_path)
    powers = (6_000.0, 6_400.0, 6_200.0, 6_000.0)
    for drive in (output, mains):
        for t, power in enumerate(powers):
            drive.accept(float(t), T0 + t, poll(power, speed_rpm=1200.0))
        drive.account.close_window()
    lossy, plain = output.account.totals, mains.account.totals
    assert not output.errors and lossy.energy_j == plain.energy_j == pytest.approx(18_600.0)
    assert plain.drive_losses_j == 0.0  # a mains reading: the losses are in it
    # The model's drive losses: at the shaft power behind each output reading, what ``losses`` adds
    # for a mains reading over the motor's alone.
    ratio, rated, full_load = 1200.0 / 1470.0, RATED_W, table_efficiency(15.0, 4)  # IE3, 4 poles: 1470 rpm
    per_poll = []
    for power in powers:
        shaft = shaft_from_electrical(np.array([power]), np.array([ratio]), rated, full_load, drive=False)
        both, motor = (losses(shaft, np.array([ratio]), rated, full_load, drive=d)[0] for d in (True, False))
        per_poll.append(both - motor)
    expected = sum(0.5 * (a + b) for a, b in zip(per_poll, per_poll[1:], strict=False))
    assert lossy.drive_losses_j == pytest.approx(expected, rel=1e-6)
    assert 0.01 < expected / 3.0 / (rated / full_load) < 0.025  # 1-2.5 % of the rated input at 82 % speed
    net = plain.saved_stipulated_j - plain.penalty_stipulated_j
    assert lossy.saved_stipulated_j - lossy.penalty_stipulated_j == pytest.approx(net - expected)
    registry = CollectorRegistry()
    registry.register(AgentCollector([output], "EUR"))
    value = registry.get_sample_value
    assert value("vfd_drive_losses_modelled_joules_total", {"drive": output.name}) == pytest.approx(expected)
    assert value("vfd_energy_saved_joules_total", {"drive": output.name, "basis": "vfd_stipulated"}) \
        == pytest.approx(lossy.saved_stipulated_j)


def test_an_energy_counter_going_backwards_is_a_counter_reset_and_books_nothing_negative(tmp_path):
    drive = a_drive(tmp_path)
    kwh = 3.6e6
    energies = []
    for t, counter in enumerate((100.0, 100.01, 100.02, 0.0, 0.01, 0.02)):  # the drive restarted at t=3
        drive.accept(float(t) * 4, T0 + 4 * t, poll(9_000.0, counter * kwh))
        energies.append(drive.account.totals.energy_j)
    assert energies == sorted(energies)
    assert drive.errors[COUNTER_RESET] == 1 and drive.up
    assert drive.account.totals.energy_j == pytest.approx(5 * 4 * 9_000.0, rel=0.2)


# -- energy held while the wall clock cannot be trusted -------------------------------------------


def test_energy_held_while_the_clock_is_untrusted_is_filed_at_the_hours_it_happened():
    acc = account(max_gap=5.0)
    true_start = T0 + 3600.0 - 30.0  # 06:59:30 (the true time of t = 0)
    for t in range(61):  # a minute of 1 kW, the wall clock untrusted for the first 40 s
        wall = true_start + t if t >= 40 else math.nan
        acc.add(EnergySample(float(t), wall, 1000.0, 2000.0))
        if t == 39:
            assert acc.totals.energy_j == 0.0 and acc.held_s == pytest.approx(39.0)
            assert acc.close_window() == {}  # nothing filed at any hour yet
    assert acc.held_s == 0.0
    hours = acc.close_window()
    first, second = int(T0), int(T0) + 3600
    assert hours[first].energy_j == pytest.approx(30 * 1000.0)  # back-dated across the hour edge
    assert hours[second].energy_j == pytest.approx(30 * 1000.0)
    assert acc.totals.energy_j == pytest.approx(60 * 1000.0)


def test_a_gap_while_untrusted_is_filed_with_the_held_energy():
    acc = account(max_gap=5.0)
    for t, wall in ((0.0, math.nan), (1.0, math.nan), (20.0, math.nan), (21.0, T0 + 21.0)):
        acc.add(EnergySample(t, wall, 1000.0, 1000.0))
    assert acc.totals.gaps == 1 and acc.totals.energy_j == pytest.approx(2000.0)
    hours = acc.close_window()
    assert sum(h.gaps for h in hours.values()) == 1 and list(hours) == [hour_start(T0)]


# -- the wall clock ----------------------------------------------------------------------------------


class Clocks:
    """A monotonic and a wall clock the test moves by hand."""

    def __init__(self, wall: float, synchronized: bool | None = None) -> None:
        self.mono = 1000.0
        self.offset = wall - self.mono
        self.synchronized = synchronized

    def advance(self, seconds: float) -> None:
        self.mono += seconds

    def wall(self) -> float:
        return self.mono + self.offset

    def watch(self, floor: float = T0 - 86_400.0) -> WallClock:
        return WallClock(wall=self.wall, monotonic=lambda: self.mono, synchronized=lambda: self.synchronized,
                         floor=floor)


def test_steps_are_counted_and_logged_once_each(caplog):
    caplog.set_level(logging.INFO, logger="agent.wallclock")
    clocks = Clocks(T0)
    watch = clocks.watch()
    readings = []
    for step in (0.0, 0.0, 0.5 * STEP_S, 0.0, 7200.0, 0.0, 0.0, -3.0, 0.0):
        clocks.offset += step
        clocks.advance(1.0)
        readings.append(watch.read())
    assert watch.steps == 2  # +2 h and -3 s; the half-second slew is not a step
    assert caplog.text.count("wall clock stepped by") == 2
    assert "stepped by +7200.0 s" in caplog.text and "stepped by -3.0 s" in caplog.text
    assert all(math.isfinite(r) for r in readings)
    registry = CollectorRegistry()
    registry.register(ClockCollector(watch))
    assert registry.get_sample_value("vfd_clock_steps_total") == 2.0
    assert registry.get_sample_value("vfd_clock_trusted") == 1.0


def test_a_clock_before_the_floor_is_not_trusted_until_it_is_set(caplog):
    caplog.set_level(logging.INFO, logger="agent.wallclock")
    clocks = Clocks(86_400.0 * 287)  # 1970-10-15: a Pi without an RTC, before NTP
    watch = clocks.watch()
    for _ in range(5):
        clocks.advance(1.0)
        assert math.isnan(watch.read())
    assert caplog.text.count("held in memory") == 1 and not watch.trusted
    clocks.offset = T0 - clocks.mono  # NTP sets it
    assert watch.read() == T0 and watch.trusted and watch.steps == 1
    watch.raise_floor(T0 + 7200.0)  # the ledger has a newer hour: this time cannot be real
    clocks.advance(1.0)
    assert math.isnan(watch.read())


def test_an_unsynchronized_clock_is_held_then_used_after_the_limit_and_sync_trumps_the_floor():
    clocks = Clocks(T0, synchronized=False)  # timesyncd runs, not synchronized yet
    watch = clocks.watch()
    assert math.isnan(watch.read())
    clocks.advance(UNSYNCED_HOLD_S - 10.0)
    assert math.isnan(watch.read())
    clocks.advance(20.0)
    assert watch.read() == clocks.wall()  # an air-gapped plant: used anyway, with a warning
    synced = Clocks(T0 - 86_400.0 * 30, synchronized=True)  # the ledger was filed by a clock ahead
    assert synced.watch(floor=T0).read() == synced.wall()


def test_timesyncd_flag_file(tmp_path):
    assert timesyncd_synchronized(tmp_path / "absent") is None  # no timesyncd: no opinion
    assert timesyncd_synchronized(tmp_path) is False
    (tmp_path / "synchronized").touch()
    assert timesyncd_synchronized(tmp_path) is True


def test_a_reload_carries_the_energy_held_for_the_clock_to_the_new_account():
    old = account(max_gap=5.0)
    for t in range(21):  # 20 s of 1 kW while the wall clock is untrusted
        old.add(EnergySample(float(t), math.nan, 1000.0, 2000.0))
    assert old.held_s == pytest.approx(20.0)
    new = account(max_gap=5.0)
    new.carry_over(old)
    assert new.held_s == pytest.approx(20.0)
    new.add(EnergySample(20.0, T0 + 20.0, 1000.0, 2000.0))  # the same chain goes on: nothing booked yet
    new.add(EnergySample(21.0, T0 + 21.0, 1000.0, 2000.0))  # trusted: the held 20 s are filed, then 1 s
    assert new.totals.energy_j == pytest.approx(21 * 1000.0)
