"""A sub-millisecond sleep or callback that never blocks the event loop: a Linux timerfd as a reader.

asyncio's own timers wake on whole milliseconds: the selector rounds its timeout up to the
next millisecond (``epoll_wait`` takes milliseconds), so ``asyncio.sleep(0.0012)`` returns
after about 2 ms. On an RTU line at 115200 baud, where t3.5 is 1.75 ms and a read of a few
registers 3..7 ms, that rounding costs about half a millisecond per read. A timerfd expires
to the kernel's timer slack (50 µs for an ordinary thread) and wakes the selector by becoming
readable, so the loop goes on serving every other bus and the endpoint while it waits.

Linux (glibc or musl) through ctypes; anywhere the timerfd cannot be made, or on a loop
without ``add_reader``, it falls back to ``asyncio.sleep``: the same wait, rounded up.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import time
from collections.abc import Callable

_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = os.O_CLOEXEC


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.timerfd_create.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.timerfd_settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Itimerspec),
                                         ctypes.c_void_p]
    except (OSError, AttributeError):  # no libc by that name, or no timerfd in it (not Linux)
        return None
    return libc


_LIBC = _libc()


def _timerfd(seconds: float) -> int:
    """A non-blocking timerfd on CLOCK_MONOTONIC armed to expire once in ``seconds``; -1 if none."""
    if _LIBC is None:
        return -1
    fd = int(_LIBC.timerfd_create(time.CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC))
    if fd < 0:
        return -1
    ns = max(int(seconds * 1e9), 1)  # 0 would disarm it
    spec = _Itimerspec(_Timespec(0, 0), _Timespec(ns // 1_000_000_000, ns % 1_000_000_000))
    if _LIBC.timerfd_settime(fd, 0, ctypes.byref(spec), None) != 0:
        os.close(fd)
        return -1
    return fd


def available() -> bool:
    """Whether ``sleep`` wakes by timerfd here (else it is ``asyncio.sleep``)."""
    fd = _timerfd(1.0)
    if fd < 0:
        return False
    os.close(fd)
    return True


async def sleep(seconds: float) -> None:
    """Wait ``seconds`` to the kernel's timer slack, letting the event loop run meanwhile."""
    if seconds <= 0.0:
        return
    fd = _timerfd(seconds)
    if fd < 0:
        await asyncio.sleep(seconds)
        return
    loop = asyncio.get_running_loop()
    woken: asyncio.Future[None] = loop.create_future()
    try:
        try:
            loop.add_reader(fd, _wake, woken)
        except NotImplementedError:  # a loop without readers (Windows' proactor)
            await asyncio.sleep(seconds)
            return
        try:
            await woken
        finally:
            loop.remove_reader(fd)
    finally:
        os.close(fd)  # closing the descriptor disarms the timer (also when cancelled)


class Timer:
    """A callback due on a timerfd (``call_later``); ``cancel`` before it fires, and it never does."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, callback: Callable[[], None]) -> None:
        self._loop, self._fd, self._callback = loop, fd, callback
        loop.add_reader(fd, self._fire)

    def _fire(self) -> None:
        # The callback first: closing the descriptor (two system calls) is no reason to delay it.
        try:
            if self._fd >= 0:
                self._callback()
        finally:
            self.cancel()

    def cancel(self) -> None:
        """Disarm and close the timer; harmless after it fired."""
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1


def call_later(seconds: float, callback: Callable[[], None]) -> Timer | asyncio.TimerHandle:
    """Call ``callback`` from the event loop once ``seconds`` have passed, never before.

    Unlike ``sleep`` no task wakes in between: the callback runs in the loop iteration the
    timerfd expires in (a task resumed by ``sleep`` runs one iteration later, and then still
    has to do its work). Without a timerfd it is ``loop.call_later``, rounded up as ``sleep``.
    """
    loop = asyncio.get_running_loop()
    fd = _timerfd(seconds)
    if fd >= 0:
        try:
            return Timer(loop, fd, callback)
        except NotImplementedError:  # a loop without readers (Windows' proactor)
            os.close(fd)
    return loop.call_later(seconds, callback)


def _wake(woken: asyncio.Future[None]) -> None:
    if not woken.done():
        woken.set_result(None)
