"""The worker's slot in the scoreboard (layout: docs/scoreboard.md): a shared memory file the master created
and passed as a descriptor. Per request a core writes its own record (start, request line) and the worker
totals: a few stores into shared memory, no message to the master."""
import mmap
import struct

HEADER_SIZE = 64
CORE_SIZE = 128
TEXT_MAX = 111
_WORKER = struct.Struct('<IIQQQQQQ')
_BUSY = struct.Struct('<IIQQQQQ')        # pid, status, totals, oldest start (everything up to offset 48)
_CORE_START = struct.Struct('<QQB')      # start, requests, text length
_U64 = struct.Struct('<Q')
_SLOT = struct.Struct('<IIQQQQ')         # pid, status, requests, exceptions, tx, total response time
_IDENT = struct.Struct('<HHI')           # worker id, respawns, spawn time (s): written by the master
_U32 = struct.Struct('<I')


class Scoreboard(object):
    __slots__ = ('mm', 'off', 'pid', 'stride', 'slots')

    def __init__(self, fd, size, slot, pid):
        self.mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.stride = _U32.unpack_from(self.mm, 24)[0]
        self.off = slot * self.stride
        self.pid = pid
        self.slots = size // self.stride
        # Bytes 56..63 are the master's (worker id, respawns, spawn time: identify() in scoreboard.ts).
        self.mm[self.off:self.off + 56] = bytes(56)
        self.mm[self.off + 64:self.off + self.stride] = bytes(self.stride - 64)
        _WORKER.pack_into(self.mm, self.off, pid, 0, 0, 0, 0, 0, 0, 0)

    def busy(self, core, now_us, requests, exceptions, tx, rt_total, request_line):
        """A core starts a request. `request_line` is latin-1 bytes (`METHOD URI`)."""
        mm = self.mm
        coff = self.off + HEADER_SIZE + CORE_SIZE * core
        n = len(request_line)
        if n > TEXT_MAX:
            request_line = request_line[:TEXT_MAX]
            n = TEXT_MAX
        _CORE_START.pack_into(mm, coff, now_us, requests, n)
        mm[coff + 17:coff + 17 + n] = request_line
        _BUSY.pack_into(mm, self.off, self.pid, 1, requests, exceptions, tx, rt_total, now_us)

    def idle(self, core, now_us, core_requests, requests, exceptions, tx, rt_total, oldest_start):
        """A core finished its request; `oldest_start` is the start of another core's request still running
        (0 when the worker is now idle)."""
        mm = self.mm
        _CORE_START.pack_into(mm, self.off + HEADER_SIZE + CORE_SIZE * core, 0, core_requests, 0)
        _WORKER.pack_into(mm, self.off, self.pid, 1 if oldest_start else 0, requests, exceptions, tx, rt_total,
                          oldest_start, now_us)

    def total_requests(self):
        """Requests served by every worker, gone ones included (the second number of uWSGI's `req: N/M`)."""
        mm = self.mm
        stride = self.stride
        total = _U64.unpack_from(mm, 16)[0]
        unpack = _U64.unpack_from
        for i in range(1, min(_U32.unpack_from(mm, 8)[0], self.slots)):
            total += unpack(mm, i * stride + 8)[0]
        return total


    def workers(self):
        """Every live slot as (slot, pid, busy, requests, exceptions, tx, rt_total, id, respawns, spawned_at):
        read for uwsgi.workers(), never per request."""
        mm = self.mm
        stride = self.stride
        out = []
        for i in range(1, min(_U32.unpack_from(mm, 8)[0], self.slots)):
            off = i * stride
            pid, status, requests, exceptions, tx, rt_total = _SLOT.unpack_from(mm, off)
            if not pid:
                continue
            wid, respawns, spawned = _IDENT.unpack_from(mm, off + 56)
            out.append((i, pid, status == 1, requests, exceptions, tx, rt_total, wid, respawns, spawned))
        return out


class NoScoreboard(object):
    """Stand-in when no scoreboard descriptor was given (a worker started by hand for debugging)."""
    __slots__ = ()

    def busy(self, core, now_us, requests, exceptions, tx, rt_total, request_line):
        pass

    def idle(self, core, now_us, core_requests, requests, exceptions, tx, rt_total, oldest_start):
        pass

    def total_requests(self):
        return 0

    def workers(self):
        return []
