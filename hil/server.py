"""A whole plant served as Modbus TCP drives, one unit id per drive, like a TCP gateway.

This is the only ``hil`` module that imports pymodbus. Each drive is one
``SimDevice`` whose block spans its profile's addresses; the device's ``action``
coroutine copies the drive's current register image in on every read and hands
writes to the physics. Unit ids the plant does not have get exception 0x0B
(gateway target failed to respond), as from a real gateway.

The physics runs on the event loop (a task stepping it every physics step, and
every request catching it up first), so no locks are needed; other threads,
such as a Prometheus scrape, read only immutable snapshots.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from agent.profile import Quantity, RegisterTable
from hil.model import DriveSnapshot, PlantModel
from hil.plantfile import DriveSpec, PlantSpec
from hil.registers import DriveRegisters, WriteResult

log = logging.getLogger(__name__)

GATEWAY_UNIT = 0  # pymodbus's catch-all device: answers for every unit the plant lacks
MAX_ADDRESS_COUNT = 0x10000
_RESULT_CODES = {
    WriteResult.ILLEGAL_ADDRESS: ExcCodes.ILLEGAL_ADDRESS,
    WriteResult.ILLEGAL_VALUE: ExcCodes.ILLEGAL_VALUE,
}


class _DriveEndpoint:
    """Glue between one drive's registers and pymodbus's SimDevice action protocol."""

    def __init__(self, plant: SimulatedPlant, spec: DriveSpec) -> None:
        self.plant = plant
        self.spec = spec
        self.registers = DriveRegisters(spec)

    def device(self) -> SimDevice:
        spans = self.registers.spans
        if len(spans) == 1:
            (span,) = spans.values()
            blocks = [SimData(address=span.start, count=span.count, datatype=DataType.REGISTERS)]
            return SimDevice(id=self.spec.unit, simdata=blocks, action=self.action)
        # Holding and input registers apart: pymodbus then needs coil and discrete-input
        # blocks too; one register of each, which the profile never names.
        bits = [SimData(address=0, count=1, values=0, datatype=DataType.BITS)]
        holding, inputs = spans[RegisterTable.HOLDING], spans[RegisterTable.INPUT]
        return SimDevice(
            id=self.spec.unit,
            simdata=(
                bits, list(bits),
                [SimData(address=holding.start, count=holding.count, datatype=DataType.REGISTERS)],
                [SimData(address=inputs.start, count=inputs.count, datatype=DataType.REGISTERS)],
            ),
            action=self.action,
        )

    async def action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """Refresh the block from the physics on reads; apply writes to the physics."""
        self.plant.update()
        snapshot = self.plant.snapshot(self.spec.name)
        table = RegisterTable.INPUT if function_code == 4 else RegisterTable.HOLDING
        if table not in self.registers.spans:
            table = next(iter(self.registers.spans))  # one shared block serves both tables
        if values is not None:
            result, ratio = self.registers.write(address, [int(v) for v in values], snapshot)
            if result is not WriteResult.OK:
                return _RESULT_CODES[result]
            if ratio is not None:
                self.plant.model.drives[self.spec.name].remote_setpoint = ratio
            return None
        image = self.registers.image(table, snapshot)
        offset = self.registers.spans[table].start - start_address
        registers[offset : offset + len(image)] = image
        return None


async def _absent_unit(*_args: object) -> ExcCodes:
    return ExcCodes.GATEWAY_NO_RESPONSE


class SimulatedPlant:
    """A plant's physics plus its drives served over Modbus TCP.

    The physics clock starts when the plant is created; ``update()`` catches the
    physics up to the clock, which the server also does on every request and a
    background task does every physics step while serving.
    """

    def __init__(self, spec: PlantSpec, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        self.clock = clock
        self.model = PlantModel(spec)
        self._t0 = clock()
        self._endpoints = {d.name: _DriveEndpoint(self, d) for d in spec.drives}
        self._server: ModbusTcpServer | None = None
        self._physics: asyncio.Task[None] | None = None
        self.host = ""
        self.port = 0

    @property
    def drive_names(self) -> tuple[str, ...]:
        """Names of the drives, in plant-file order."""
        return tuple(d.name for d in self.spec.drives)

    @property
    def units(self) -> dict[str, int]:
        """Unit id of each drive."""
        return {d.name: d.unit for d in self.spec.drives}

    @property
    def profile_names(self) -> dict[str, str]:
        """Name of the register-map profile each drive is served through."""
        return {d.name: d.profile.name for d in self.spec.drives}

    @property
    def serving(self) -> bool:
        """True between start() and stop()."""
        return self._server is not None

    def update(self) -> None:
        """Advance the physics to the clock."""
        self.model.advance_to(self.clock() - self._t0)

    def snapshot(self, name: str) -> DriveSnapshot:
        """Latest physics state of a drive (as of the last step; see update())."""
        return self.model.snapshot(name)

    def true_energy_j(self, name: str) -> float:
        """True electrical energy the drive has drawn since the start [J]."""
        return self.model.snapshot(name).energy

    def true_baseline_energy_j(self, name: str) -> float:
        """True baseline energy since the start [J], at the true speed."""
        return self.model.snapshot(name).baseline_energy

    def set_remote_setpoint(self, name: str, ratio: float | None) -> None:
        """Set (or with None, release) a drive's fieldbus speed setpoint, as a Modbus write would."""
        self.model.drives[name].remote_setpoint = ratio
        registers = self._endpoints[name].registers
        if ratio is None:
            registers.held.pop(Quantity.SPEED_SETPOINT, None)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Bind the Modbus server (port 0: any free port, see ``self.port``) and start the physics."""
        if self._server is not None:
            raise RuntimeError("the simulated plant is already serving")
        devices = [e.device() for e in self._endpoints.values()]
        devices.append(SimDevice(
            id=GATEWAY_UNIT,
            simdata=[SimData(address=0, count=MAX_ADDRESS_COUNT, datatype=DataType.REGISTERS)],
            action=_absent_unit,
        ))
        server = ModbusTcpServer(devices, address=(host, port))
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:  # pymodbus's way of saying the bind failed
            raise OSError(f"cannot listen on {host}:{port}: {exc}") from exc
        listener = server.transport
        if not isinstance(listener, asyncio.Server) or not listener.sockets:  # pragma: no cover
            await server.shutdown()  # type: ignore[no-untyped-call]
            raise OSError(f"cannot listen on {host}:{port}")
        bound = listener.sockets[0].getsockname()
        self.host, self.port = str(bound[0]), int(bound[1])
        self._server = server
        self._physics = asyncio.create_task(self._run_physics(), name="hil physics")

    async def _run_physics(self) -> None:
        while True:
            self.update()
            await asyncio.sleep(self.spec.step)

    async def stop(self) -> None:
        """Stop serving and the physics task; a restart resumes the kept state, caught up to the clock."""
        server, task = self._server, self._physics
        self._server = self._physics = None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]
            # Let the closed connections run their connection_lost callbacks.
            await asyncio.sleep(0)
