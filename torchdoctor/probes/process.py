"""What the process and the machine hold in memory, read from the operating system: resident
memory (/proc/self/statm, psutil elsewhere), glibc's heap counter, the peak, and the machine's
RAM. Host numbers, no device sync."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Callable
from typing import Any


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _glibc_mallinfo() -> Callable[[], Any] | None:
    """glibc's `mallinfo2`: the bytes malloc has handed out and not got back, exact and ~1 us to
    read, where RSS moves by tens of MiB with the allocator's whims. None elsewhere."""
    function = None
    # The process's own symbols first (glibc's are among them on Linux): find_library runs
    # ldconfig in a subprocess, 2 ms at the first memory sample.
    for name in (None, "libc.so.6"):
        try:
            function = ctypes.CDLL(name).mallinfo2
            break
        except (OSError, AttributeError, TypeError):
            continue
    if function is None:
        try:
            function = ctypes.CDLL(ctypes.util.find_library("c")).mallinfo2
        except (OSError, AttributeError, TypeError):
            return None
    function.restype = _MallInfo2
    function.argtypes = []
    return function


_MALLINFO: list[Callable[[], Any] | None] = []


def heap_in_use() -> int | None:
    """Bytes of CPU memory allocated through malloc (CPU tensors included) and not freed."""
    if not _MALLINFO:
        _MALLINFO.append(_glibc_mallinfo())
    function = _MALLINFO[0]
    if function is None:
        return None
    try:
        info = function()
        return int(info.uordblks + info.hblkhd)
    except Exception:
        return None


_PROCESS: list[Any] = []
_STATM: list[int] = []  # Linux: (fd of /proc/self/statm, page size, pid): a microsecond to read, psutil ten


def process_rss() -> int | None:
    if not _STATM or _STATM[2] != os.getpid():  # first call, or a forked child: its own file
        try:
            _STATM[:] = [os.open("/proc/self/statm", os.O_RDONLY), os.sysconf("SC_PAGE_SIZE"), os.getpid()]
        except (OSError, ValueError, AttributeError):
            _STATM[:] = [-1, 0, os.getpid()]
    if _STATM[0] >= 0:
        try:
            return int(os.pread(_STATM[0], 128, 0).split()[1]) * _STATM[1]
        except (OSError, ValueError, IndexError):
            _STATM[0] = -1
    try:
        if not _PROCESS:
            import psutil

            _PROCESS.append(psutil.Process())
        return int(_PROCESS[0].memory_info().rss)
    except Exception:
        return None


def peak_rss() -> int | None:
    """The process's peak resident memory so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak * (1 if sys.platform == "darwin" else 1024))
    except Exception:
        return None


def machine_ram() -> int | None:
    """The CPU's capacity: the machine's RAM. Asked at every start: from sysconf (Linux, macOS),
    which costs nothing, where importing psutil costs 20 ms; psutil elsewhere."""
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        if pages > 0 and size > 0:
            return int(pages * size)
    except (ValueError, OSError, AttributeError):
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:
        return None
