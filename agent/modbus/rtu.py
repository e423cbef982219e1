"""Modbus RTU line timing: what a frame costs on the wire, and whether a bus's plan fits.

An RTU line carries one transaction at a time. Each character is a start bit,
8 data bits, a parity bit (or a second stop bit) and a stop bit: 11 bits. Frames
are separated by a silence of 3.5 characters (t3.5), which the Modbus serial
line specification fixes at 1.75 ms above 19200 baud. A read of ``n`` registers
is an 8-byte request and a ``5 + 2n``-byte response, so at 19200 baud a read of
10 registers holds the line for 33 × 0.573 ms + 2 × 2.005 ms ≈ 22.9 ms, before
the drive's own turnaround.

The same model decides whether bridging a gap between two points is cheaper
than a second frame (``break_even_gap``); whether the drives of a bus can be polled
at their rates is ``agent.modbus.readplan.PollBudget``'s, on these frame times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Fixed by the Modbus over serial line specification (V1.02, 2.5.1.1).
FAST_BAUD = 19200
FAST_T35_S = 1.75e-3
FAST_T15_S = 0.75e-3
READ_REQUEST_BYTES = 8  # id, function, address (2), count (2), CRC (2)
READ_RESPONSE_OVERHEAD_BYTES = 5  # id, function, byte count, CRC (2)
EXCEPTION_RESPONSE_BYTES = 5
WRITE_SINGLE_BYTES = 8  # request and response alike
STANDARD_BAUDRATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)


def crc16(data: bytes) -> int:
    """Modbus RTU CRC-16 (polynomial 0xA001, initial 0xFFFF); it goes on the wire low byte first."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def response_size(frame: bytes) -> int | None:
    """Length of the RTU response frame that starts ``frame``, once its header says; None before."""
    if len(frame) < 3:
        return None
    function = frame[1]
    if function & 0x80:
        return EXCEPTION_RESPONSE_BYTES
    if function in (1, 2, 3, 4):
        return READ_RESPONSE_OVERHEAD_BYTES + frame[2]
    if function in (5, 6, 15, 16):
        return WRITE_SINGLE_BYTES
    return None


def crc_ok(frame: bytes) -> bool:
    """True if the frame's last two bytes are the CRC of the rest."""
    return len(frame) >= 4 and crc16(frame[:-2]) == int.from_bytes(frame[-2:], "little")


@dataclass(frozen=True)
class LineTiming:
    """Wire timing of one serial line."""

    baudrate: int
    bits_per_char: int = 11
    inter_frame_delay: float = 0.0  # s, extra silence the bus config asks for

    @classmethod
    def for_settings(cls, baudrate: int, parity: str, stopbits: int, inter_frame_delay: float = 0.0
                     ) -> LineTiming:
        """Timing from the serial settings: start + 8 data + parity (if any) + stop bits."""
        bits = 1 + 8 + (0 if parity.upper() == "N" else 1) + stopbits
        return cls(baudrate, bits, inter_frame_delay)

    @property
    def char_time(self) -> float:
        """Seconds one character takes on the wire."""
        return self.bits_per_char / self.baudrate

    @property
    def t35(self) -> float:
        """The inter-frame silence t3.5 (fixed at 1.75 ms above 19200 baud)."""
        if self.baudrate > FAST_BAUD:
            return FAST_T35_S
        return 3.5 * self.char_time

    @property
    def t15(self) -> float:
        """The longest silence allowed inside a frame, t1.5 (fixed at 0.75 ms above 19200 baud)."""
        if self.baudrate > FAST_BAUD:
            return FAST_T15_S
        return 1.5 * self.char_time

    @property
    def gap(self) -> float:
        """The silence actually kept between frames: t3.5 or the configured delay, if longer."""
        return max(self.t35, self.inter_frame_delay)

    def frame_time(self, chars: int) -> float:
        """Seconds a frame of ``chars`` characters occupies the wire, without silences."""
        return chars * self.char_time

    def read_time(self, registers: int) -> float:
        """Line time of one successful read of ``registers`` registers: both frames, two silences."""
        chars = READ_REQUEST_BYTES + READ_RESPONSE_OVERHEAD_BYTES + 2 * registers
        return self.frame_time(chars) + 2.0 * self.gap

    def failed_read_time(self, timeout: float) -> float:
        """Line time a read that gets no answer holds the line: the request, then the whole wait."""
        return self.frame_time(READ_REQUEST_BYTES) + self.gap + timeout

    def break_even_gap(self) -> int:
        """Largest gap of unused registers that is cheaper to read than a frame of its own.

        A second frame costs its request, its response overhead and two silences;
        bridging costs two characters per register.
        """
        frame_cost = self.frame_time(READ_REQUEST_BYTES + READ_RESPONSE_OVERHEAD_BYTES) + 2.0 * self.gap
        return int(math.floor(frame_cost / (2.0 * self.char_time)))
