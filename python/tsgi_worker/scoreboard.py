"""The worker's slot in the scoreboard: a shared memory file the master created and passed as a descriptor.

Each worker writes only its own 64-byte slot, so per-request bookkeeping costs a few stores into shared
memory and no message to the master. Layout (little endian), shared with src/master/scoreboard.ts:
  0 u32 pid | 4 u32 status (0 idle, 1 busy) | 8 u64 requests | 16 u64 exceptions | 24 u64 bytes sent
  32 u64 total response time (us) | 40 u64 start of the current request (us since epoch, 0 when idle)
  48 u64 end of the last request (us since epoch) | 56 reserved
Slot 0 is the header, written by the master only: 0 u32 magic | 4 u32 layout version | 8 u32 slots in use
(highest worker slot + 1) | 16 u64 requests of workers that have exited. Worker slots start at 1.
"""
import mmap
import struct

SLOT_SIZE = 64
_SLOT = struct.Struct('<IIQQQQQQ')
_BUSY = struct.Struct('<I')
_START = struct.Struct('<Q')
_REQUESTS = struct.Struct('<Q')
_IN_USE = struct.Struct('<I')


class Scoreboard(object):
    __slots__ = ('mm', 'off', 'pid', 'slots')

    def __init__(self, fd, size, slot, pid):
        self.mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.off = slot * SLOT_SIZE
        self.pid = pid
        self.slots = size // SLOT_SIZE
        _SLOT.pack_into(self.mm, self.off, pid, 0, 0, 0, 0, 0, 0, 0)

    def busy(self, now):
        _BUSY.pack_into(self.mm, self.off + 4, 1)
        _START.pack_into(self.mm, self.off + 40, int(now * 1000000))

    def idle(self, requests, exceptions, tx, rt_total, now):
        _SLOT.pack_into(self.mm, self.off, self.pid, 0, requests, exceptions, tx, rt_total, 0, int(now * 1000000))

    def total_requests(self):
        """Requests served by every live worker (the second number of uWSGI's `req: N/M`)."""
        mm = self.mm
        unpack = _REQUESTS.unpack_from
        total = unpack(mm, 16)[0]
        for i in range(1, min(_IN_USE.unpack_from(mm, 8)[0], self.slots)):
            total += unpack(mm, i * SLOT_SIZE + 8)[0]
        return total


class NoScoreboard(object):
    """Stand-in when no scoreboard descriptor was given (a worker started by hand for debugging)."""
    __slots__ = ()

    def busy(self, now):
        pass

    def idle(self, requests, exceptions, tx, rt_total, now):
        pass

    def total_requests(self):
        return 0
