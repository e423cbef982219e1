"""Register codec: Modbus 16-bit registers to numbers and back.

pymodbus's own converters know word order only; byte-swapped layouts
(BADC, DCBA) are common on drives, so the codec handles both orders itself.
Naming follows the usual letters for a 32-bit value A (most significant
byte) .. D: ``word_order=big, byte_order=big`` is ABCD, ``little, big`` is
CDAB, ``big, little`` is BADC and ``little, little`` is DCBA.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from enum import Enum


class DataType(Enum):
    """Wire type of a register point."""

    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"

    @property
    def registers(self) -> int:
        """Number of 16-bit registers the type occupies."""
        return _LAYOUT[self][1] // 2

    @property
    def is_float(self) -> bool:
        """True for IEEE 754 types."""
        return self in (DataType.FLOAT32, DataType.FLOAT64)

    @property
    def bounds(self) -> tuple[int, int]:
        """Smallest and largest integer the type holds (floats: not meaningful)."""
        bits = _LAYOUT[self][1] * 8
        if self.value.startswith("uint"):
            return 0, (1 << bits) - 1
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


class Order(Enum):
    """Order of words in a multi-register value, or of bytes in a register."""

    BIG = "big"
    LITTLE = "little"


_LAYOUT: dict[DataType, tuple[str, int]] = {
    DataType.INT16: ("h", 2),
    DataType.UINT16: ("H", 2),
    DataType.INT32: ("i", 4),
    DataType.UINT32: ("I", 4),
    DataType.INT64: ("q", 8),
    DataType.UINT64: ("Q", 8),
    DataType.FLOAT32: ("f", 4),
    DataType.FLOAT64: ("d", 8),
}


def _arrange(words: list[bytes], word_order: Order, byte_order: Order) -> bytes:
    """Reorder register byte pairs into (or out of) big-endian order; an involution."""
    if byte_order is Order.LITTLE:
        words = [w[::-1] for w in words]
    if word_order is Order.LITTLE:
        words = words[::-1]
    return b"".join(words)


def decode(
    registers: Sequence[int],
    dtype: DataType,
    word_order: Order = Order.BIG,
    byte_order: Order = Order.BIG,
) -> float:
    """Decode registers into a number (integers are returned exactly as floats up to 2**53)."""
    count = dtype.registers
    if len(registers) != count:
        raise ValueError(f"{dtype.value} needs {count} registers, got {len(registers)}")
    words = [int(r).to_bytes(2, "big") for r in registers]
    fmt, _ = _LAYOUT[dtype]
    (value,) = struct.unpack(">" + fmt, _arrange(words, word_order, byte_order))
    return float(value)


def encode(
    value: float,
    dtype: DataType,
    word_order: Order = Order.BIG,
    byte_order: Order = Order.BIG,
) -> list[int]:
    """Encode a number into registers; integer types round to nearest and must fit."""
    fmt, size = _LAYOUT[dtype]
    if dtype.is_float:
        packed = struct.pack(">" + fmt, float(value))
    else:
        if not math.isfinite(value):
            raise ValueError(f"cannot encode {value} as {dtype.value}")
        as_int = round(value)
        low, high = dtype.bounds
        if not low <= as_int <= high:
            raise ValueError(f"{as_int} does not fit {dtype.value} [{low}, {high}]")
        packed = struct.pack(">" + fmt, as_int)
    words = [packed[i : i + 2] for i in range(0, size, 2)]
    ordered = _arrange(words, word_order, byte_order)
    return [int.from_bytes(ordered[i : i + 2], "big") for i in range(0, size, 2)]
