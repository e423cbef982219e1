"""Modbus I/O: the only agent module that imports pymodbus.

It maps pymodbus's failures, including exception replies (which pymodbus
returns rather than raises), to the agent's own ``DriveError`` tree, and owns
reconnection so that pymodbus never reconnects behind the poller's back.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable, Sequence
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from agent.config import BusConfig, Transport
from agent.errors import (
    DriveConnectionError,
    DriveProtocolError,
    DriveReplyError,
    DriveTimeoutError,
)
from agent.profile import RegisterTable
from agent.readplan import Block

# pymodbus logs every timeout at ERROR; the poller reports failures itself, once.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


class BusClient:
    """One connection to a bus, shared by every drive on it, one request at a time."""

    def __init__(self, bus: BusConfig) -> None:
        if bus.transport is not Transport.TCP:
            raise ValueError(f"bus {bus.name}: transport {bus.transport.value} is not supported")
        self.bus = bus
        self._client = AsyncModbusTcpClient(
            bus.host,
            port=bus.port,
            timeout=bus.timeout,
            retries=bus.retries,
            reconnect_delay=0,  # the poller reconnects with its own backoff
            name=f"bus {bus.name}",
        )
        self._lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        """True while the transport is up."""
        return bool(self._client.connected)

    async def connect(self) -> None:
        """Open the connection; DriveConnectionError if it cannot be opened in time."""
        try:
            ok = await asyncio.wait_for(self._client.connect(), timeout=self.bus.timeout * 2 + 1.0)
        except (OSError, asyncio.TimeoutError, ModbusException) as exc:
            raise DriveConnectionError(f"cannot connect to {self.bus.host}:{self.bus.port}: {exc}") from exc
        if not ok:
            raise DriveConnectionError(f"cannot connect to {self.bus.host}:{self.bus.port}")

    def close(self) -> None:
        """Drop the connection."""
        self._client.close()

    async def read(self, unit: int, block: Block) -> list[int]:
        """Read one block from one unit."""
        if block.table is RegisterTable.HOLDING:
            call = self._client.read_holding_registers(block.start, count=block.count, device_id=unit)
        else:
            call = self._client.read_input_registers(block.start, count=block.count, device_id=unit)
        response = await self._execute(call, block.table.read_function)
        registers = list(getattr(response, "registers", []))
        if len(registers) != block.count:
            raise DriveProtocolError(
                f"asked for {block.count} registers at {block.start}, got {len(registers)}"
            )
        return registers

    async def write(self, unit: int, address: int, values: Sequence[int]) -> None:
        """Write holding registers (function 16, or 6 for a single register)."""
        if len(values) == 1:
            call = self._client.write_register(address, values[0], device_id=unit)
            function = 6
        else:
            call = self._client.write_registers(address, list(values), device_id=unit)
            function = 16
        await self._execute(call, function)

    async def _execute(self, call: Awaitable[Any], function: int) -> Any:
        # A hard deadline above pymodbus's own timeout × retries, so no request can hang.
        deadline = self.bus.timeout * (self.bus.retries + 1) + 1.0
        try:
            async with self._lock:
                response = await asyncio.wait_for(call, timeout=deadline)
        except asyncio.TimeoutError as exc:
            raise DriveTimeoutError(f"no answer within {deadline:g} s") from exc
        except ConnectionException as exc:
            raise DriveConnectionError(str(exc)) from exc
        except ModbusIOException as exc:
            if not self.connected:
                raise DriveConnectionError(str(exc)) from exc
            text = str(exc)
            if "No response" in text:
                raise DriveTimeoutError(text) from exc
            raise DriveProtocolError(text) from exc
        except (ModbusException, ValueError, struct.error) as exc:
            raise DriveProtocolError(str(exc)) from exc
        except OSError as exc:
            raise DriveConnectionError(str(exc)) from exc
        if response is None:
            raise DriveProtocolError("empty response")
        if response.isError():
            code = int(getattr(response, "exception_code", 0))
            raise DriveReplyError(function, code)
        return response

