import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.modbus.codec import DataType, Order, decode, encode

ORDERS = [(w, b) for w in Order for b in Order]


@pytest.mark.parametrize(
    ("word_order", "byte_order", "expected"),
    [
        (Order.BIG, Order.BIG, [0x1234, 0x5678]),  # ABCD
        (Order.LITTLE, Order.BIG, [0x5678, 0x1234]),  # CDAB
        (Order.BIG, Order.LITTLE, [0x3412, 0x7856]),  # BADC
        (Order.LITTLE, Order.LITTLE, [0x7856, 0x3412]),  # DCBA
    ],
)
def test_uint32_layouts_match_the_named_byte_orders(word_order, byte_order, expected):
    assert encode(0x12345678, DataType.UINT32, word_order, byte_order) == expected
    assert decode(expected, DataType.UINT32, word_order, byte_order) == 0x12345678


def test_signed_values_decode_negative():
    assert decode([0xFFFF], DataType.INT16) == -1
    assert decode([0x8000], DataType.INT16) == -32768
    assert decode([0xFFFF, 0xFFFE], DataType.INT32) == -2
    assert decode([0xFFFE, 0xFFFF], DataType.INT32, Order.LITTLE) == -2
    assert decode([0xFFFF], DataType.UINT16) == 65535


def test_float32_cdab_matches_struct():
    value = 12.625
    be = struct.pack(">f", value)
    cdab = [int.from_bytes(be[2:4], "big"), int.from_bytes(be[0:2], "big")]
    assert encode(value, DataType.FLOAT32, Order.LITTLE) == cdab
    assert decode(cdab, DataType.FLOAT32, Order.LITTLE) == value


def test_nan_float_survives_and_wrong_lengths_are_refused():
    assert math.isnan(decode(encode(math.nan, DataType.FLOAT32), DataType.FLOAT32))
    with pytest.raises(ValueError, match="needs 2 registers"):
        decode([1], DataType.UINT32)
    with pytest.raises(ValueError, match="does not fit"):
        encode(70000, DataType.UINT16)
    with pytest.raises(ValueError, match="does not fit"):
        encode(-1, DataType.UINT32)
    with pytest.raises(ValueError, match="cannot encode"):
        encode(math.inf, DataType.INT32)


@pytest.mark.parametrize("dtype", [t for t in DataType if not t.is_float])
@pytest.mark.parametrize(("word_order", "byte_order"), ORDERS)
@given(data=st.data())
def test_integer_round_trip(dtype, word_order, byte_order, data):
    low, high = dtype.bounds
    value = data.draw(st.integers(low, high))
    registers = encode(value, dtype, word_order, byte_order)
    assert len(registers) == dtype.registers
    assert all(0 <= r <= 0xFFFF for r in registers)
    if abs(value) <= 2**53:  # decode returns a float, exact up to 2**53
        assert decode(registers, dtype, word_order, byte_order) == value


@pytest.mark.parametrize(("word_order", "byte_order"), ORDERS)
@given(value=st.floats(allow_nan=False, width=32))
def test_float32_round_trip(word_order, byte_order, value):
    assert decode(encode(value, DataType.FLOAT32, word_order, byte_order), DataType.FLOAT32, word_order,
                  byte_order) == value


@given(registers=st.lists(st.integers(0, 0xFFFF), min_size=4, max_size=4))
def test_any_registers_decode_without_raising(registers):
    for dtype in DataType:
        value = decode(registers[: dtype.registers], dtype)
        assert isinstance(value, float)
