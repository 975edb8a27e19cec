"""uWSGI's caching framework (docs/cache.md): each cache is one shared file the master created and sized before
any worker started (src/cache/shared.ts), mapped here by every Python process of the instance. An operation is a
few struct reads and writes in shared memory under an fcntl lock on the file: no message to the master, no
network hop. fcntl locks go with the process that holds them, so a worker killed in the middle of an operation
leaves the lock free (not a deadlock); it may leave that one operation half done, as a crash inside uWSGI's
robust mutexes does.

The structures are uWSGI's (a hash table of slots chained per bucket, a stack of free slots, one block per slot or
a bitmap of blocks, an LRU list), so behaviour at the edges (items - 1 usable slots, the order of cache_keys())
is the same. Two differences, both on purpose: an expired item is never returned (uWSGI returns it until its
sweeper thread passes, every 3 seconds), and instead of a sweeper thread, expired items are freed when they are
met and whenever the cache needs room.

Layout (little endian; offsets in src/cache/config.ts, cacheLayout):
  header (128): magic, version, items, blocksize, blocks, keysize, hashsize (u64), flags (u32), loaded (u32),
                n_items, hits, miss, full, free-stack top, lru head, lru tail, bitmap position, next expiry (u64)
  hash table: u32 slot per bucket; free stack: u32 per item; items: 64-byte header + key, 8-aligned;
  bitmap (bitmap mode); data: blocks x blocksize.
"""
import fcntl
import mmap
import os
import struct
import threading
import time

HEADER_SIZE = 128
ITEM_HEADER = 64
LOCK_OFFSET = 1 << 40   # a byte past any file's end: locking it excludes other processes, touches no data

# hash, keysize, valsize, first_block, expires, prev, next, lru_prev, lru_next, hits, (reserved)
_ITEM = struct.Struct('<IIQQQIIIIQQ')
_U32 = struct.Struct('<I')
_U64 = struct.Struct('<Q')
_I64 = struct.Struct('<q')

_N_ITEMS, _HITS, _MISS, _FULL, _TOP, _LRU_HEAD, _LRU_TAIL, _BITMAP_POS, _NEXT_SCAN = 56, 64, 72, 80, 88, 96, 104, 112, 120
_LOADED = 52

# uWSGI's flags for cache_set2
UPDATE, MATH, FIXEXPIRE = 1, 2, 4
INC, DEC, MUL, DIV = 8, 16, 32, 64


def djb33x(key):
    """uWSGI's default key hash (djb2 with xor) over C `char`s: bytes >= 0x80 are sign-extended, as there."""
    h = 5381
    for c in key:
        if c > 127:
            c |= 0xffffff00
        h = ((h * 33) ^ c) & 0xffffffff
    return h


def _wrap64(n):
    return ((n + (1 << 63)) & 0xffffffffffffffff) - (1 << 63)


class Cache(object):
    def __init__(self, c, log):
        self.name = c['name']
        self.fd = c['fd']
        self.log = log
        self.items = c['items']
        self.blocksize = c['blocksize']
        self.blocks = c['blocks']
        self.keysize = c['keysize']
        self.hashsize = c['hashsize']
        self.bitmap = bool(c['bitmap'])
        self.purge_lru = bool(c['purgeLru'])
        self.ignore_full = bool(c['ignoreFull'])
        self.clear_on_full = bool(c['clearOnFull'])
        self.no_expire = bool(c['noExpire'])
        self.math_initial = c['mathInitial']
        self.max_item_size = self.blocksize * self.blocks if self.bitmap else self.blocksize
        self.mm = mmap.mmap(self.fd, c['size'], mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.ht = HEADER_SIZE
        self.stack = self.ht + 4 * self.hashsize
        self.item_size = (ITEM_HEADER + self.keysize + 7) // 8 * 8
        self.item0 = self.stack + 4 * self.items
        self.bm = self.item0 + self.item_size * self.items
        bm_size = (self.blocks + 7) // 8 if self.bitmap else 0
        self.data = (self.bm + bm_size + 7) // 8 * 8
        self.tlock = threading.Lock()

    def after_fork(self):
        """A forked process has none of its parent's threads: a thread lock held there is free here."""
        self.tlock = threading.Lock()

    # ---- locking -------------------------------------------------------------------------------------------

    def __enter__(self):
        self.tlock.acquire()
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX, 1, LOCK_OFFSET)
        except BaseException:
            self.tlock.release()
            raise
        return self

    def __exit__(self, *exc):
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, LOCK_OFFSET)
        finally:
            self.tlock.release()
        return False

    # ---- small helpers (called with the lock held) ---------------------------------------------------------

    def _h(self, off):
        return _U64.unpack_from(self.mm, off)[0]

    def _seth(self, off, v):
        _U64.pack_into(self.mm, off, v)

    def _add(self, off, n):
        _U64.pack_into(self.mm, off, (_U64.unpack_from(self.mm, off)[0] + n) & 0xffffffffffffffff)

    def _item(self, slot):
        return _ITEM.unpack_from(self.mm, self.item0 + slot * self.item_size)

    def _put_item(self, slot, fields):
        _ITEM.pack_into(self.mm, self.item0 + slot * self.item_size, *fields)

    def _bucket(self, h):
        return self.ht + 4 * (h % self.hashsize)

    def _expired(self, expires, now):
        return expires and not self.no_expire and expires <= now

    def _find(self, key, h, now):
        """The slot holding `key`, or 0. An expired item found on the way is deleted, and not returned."""
        mm = self.mm
        slot = _U32.unpack_from(mm, self._bucket(h))[0]
        n = len(key)
        rounds = 0
        while slot:
            it = self._item(slot)
            if it[0] == h and it[1] == n:
                off = self.item0 + slot * self.item_size + ITEM_HEADER
                if mm[off:off + n] == key:
                    if self._expired(it[4], now):
                        self._delete(slot)
                        return 0
                    return slot
            slot = it[6]
            rounds += 1
            if rounds > self.items:
                raise RuntimeError('cache "%s": loop in a hash chain (the file is damaged)' % self.name)
        return 0

    # ---- the bitmap of blocks ------------------------------------------------------------------------------

    def _bit(self, i):
        return self.mm[self.bm + (i >> 3)] & (0x80 >> (i & 7))

    def _mark(self, first, n, used):
        mm = self.mm
        for i in range(first, first + n):
            at = self.bm + (i >> 3)
            if used:
                mm[at] = mm[at] | (0x80 >> (i & 7))
            else:
                mm[at] = mm[at] & ~(0x80 >> (i & 7)) & 0xff

    def _needed(self, size):
        return max(1, (size + self.blocksize - 1) // self.blocksize)

    def _find_blocks(self, size):
        """The first of `needed` consecutive free blocks, scanning from where the last allocation ended and
        wrapping once (a run never crosses the end), or -1."""
        need = self._needed(size)
        start = self._h(_BITMAP_POS)
        total = self.blocks
        for lo, hi in ((start, total), (0, min(start + need, total))):
            run = 0
            for i in range(lo, hi):
                if self._bit(i):
                    run = 0
                    continue
                run += 1
                if run == need:
                    return i - need + 1
        return -1

    def _take_blocks(self, size):
        first = self._find_blocks(size)
        if first < 0:
            return -1
        n = self._needed(size)
        self._mark(first, n, True)
        self._seth(_BITMAP_POS, 0 if first + n >= self.blocks else first + n)
        return first

    # ---- LRU -----------------------------------------------------------------------------------------------

    def _lru_remove(self, slot):
        it = list(self._item(slot))
        prev, nxt = it[7], it[8]
        if nxt:
            n = list(self._item(nxt))
            n[7] = prev
            self._put_item(nxt, n)
        else:
            self._seth(_LRU_TAIL, prev)
        if prev:
            p = list(self._item(prev))
            p[8] = nxt
            self._put_item(prev, p)
        else:
            self._seth(_LRU_HEAD, nxt)

    def _lru_add(self, slot):
        tail = self._h(_LRU_TAIL)
        if tail:
            t = list(self._item(tail))
            t[8] = slot
            self._put_item(tail, t)
        else:
            self._seth(_LRU_HEAD, slot)
        it = list(self._item(slot))
        it[7], it[8] = tail, 0
        self._put_item(slot, it)
        self._seth(_LRU_TAIL, slot)

    # ---- deleting, and making room -------------------------------------------------------------------------

    def _delete(self, slot):
        it = self._item(slot)
        if not it[1]:
            return False
        h, valsize, first, prev, nxt = it[0], it[2], it[3], it[5], it[6]
        if self.bitmap:
            self._mark(first, self._needed(valsize), False)
        top = self._h(_TOP) + 1
        self._seth(_TOP, top)
        _U32.pack_into(self.mm, self.stack + 4 * top, slot)
        if prev:
            p = list(self._item(prev))
            p[6] = nxt
            self._put_item(prev, p)
        else:
            _U32.pack_into(self.mm, self._bucket(h), nxt)
        if nxt:
            n = list(self._item(nxt))
            n[5] = prev
            self._put_item(nxt, n)
        if self.purge_lru:
            self._lru_remove(slot)
        self._add(_N_ITEMS, -1)
        self._put_item(slot, (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
        return True

    def _sweep(self, now):
        """Frees every expired item; returns how many. Skipped while nothing can have expired yet."""
        next_scan = self._h(_NEXT_SCAN)
        if self.no_expire or not next_scan or next_scan > now:
            return 0
        freed = 0
        soonest = 0
        for slot in range(1, self.items):
            it = self._item(slot)
            if it[1] and it[4]:
                if it[4] <= now:
                    self._delete(slot)
                    freed += 1
                elif not soonest or it[4] < soonest:
                    soonest = it[4]
        self._seth(_NEXT_SCAN, soonest)
        return freed

    def _full(self, now):
        """No free slot or blocks: expired items first, then (as uWSGI) the least recently used item with
        purge_lru, or everything with clear_on_full. True when something was freed."""
        if self._sweep(now):
            return True
        if not self.ignore_full:
            if self.purge_lru:
                self.log('LRU item will be purged from cache "%s"' % self.name)
            else:
                self.log('*** DANGER cache "%s" is FULL !!! ***' % self.name)
        self._add(_FULL, 1)
        if self.purge_lru:
            head = self._h(_LRU_HEAD)
            if head:
                return self._delete(head)
        if self.clear_on_full:
            self._clear()
            return True
        return False

    def _clear(self):
        for slot in range(1, self.items):
            if self._item(slot)[1]:
                self._delete(slot)

    # ---- operations (each takes the lock) ------------------------------------------------------------------

    def get(self, key):
        return self.get_expires(key)[0]

    def get_expires(self, key):
        """(value, absolute expiry or 0), or (None, 0)."""
        now = int(time.time())
        with self:
            slot = self._find(key, djb33x(key), now)
            if not slot:
                self._add(_MISS, 1)
                return None, 0
            it = list(self._item(slot))
            if self.purge_lru:
                self._lru_remove(slot)
                self._lru_add(slot)
                it = list(self._item(slot))
            it[9] += 1
            self._put_item(slot, it)
            self._add(_HITS, 1)
            off = self.data + it[3] * self.blocksize
            return self.mm[off:off + it[2]], it[4]

    def exists(self, key):
        now = int(time.time())
        with self:
            return self._find(key, djb33x(key), now) != 0

    def delete(self, key):
        now = int(time.time())
        with self:
            slot = self._find(key, djb33x(key), now)
            return self._delete(slot) if slot else False

    def clear(self):
        with self:
            self._clear()
        return True

    def keys(self):
        """Every live key, in uWSGI's order: by hash bucket, then along each chain."""
        now = int(time.time())
        out = []
        with self:
            table = memoryview(self.mm)[self.ht:self.ht + 4 * self.hashsize].cast('I')
            try:
                for slot in table:
                    while slot:
                        it = self._item(slot)
                        if not self._expired(it[4], now):
                            off = self.item0 + slot * self.item_size + ITEM_HEADER
                            out.append(self.mm[off:off + it[1]])
                        slot = it[6]
            finally:
                table.release()
        return out

    def set(self, key, value, expires=0, flags=0):
        """uWSGI's cache_set2: True when stored. Without UPDATE an existing key is left alone (False)."""
        keylen = len(key)
        vallen = len(value)
        if not keylen or not vallen or keylen > self.keysize or vallen > self.max_item_size:
            return False
        now = int(time.time())
        h = djb33x(key)
        with self:
            slot = self._find(key, h, now)
            if slot:
                if not flags & UPDATE:
                    return False
                return self._update(slot, value, expires, flags, now)
            if not self._h(_TOP) and not (self._full(now) and self._h(_TOP)):
                return False
            top = self._h(_TOP)
            slot = _U32.unpack_from(self.mm, self.stack + 4 * top)[0]
            if self.bitmap:
                first = self._take_blocks(vallen)
                if first < 0 and self._full(now):
                    # what the room made may have been this very slot's neighbours: look again
                    top = self._h(_TOP)
                    slot = _U32.unpack_from(self.mm, self.stack + 4 * top)[0]
                    first = self._take_blocks(vallen)
                if first < 0:
                    return False
            else:
                first = slot
            self._seth(_TOP, top - 1)
            if expires:
                expires += now
                ns = self._h(_NEXT_SCAN)
                if not ns or ns > expires:
                    self._seth(_NEXT_SCAN, expires)
            off = self.data + first * self.blocksize
            if flags & MATH:
                num = _wrap64(self._math(self.math_initial, _I64.unpack(value)[0], flags))
                _I64.pack_into(self.mm, off, num)
            else:
                self.mm[off:off + vallen] = value
            koff = self.item0 + slot * self.item_size + ITEM_HEADER
            self.mm[koff:koff + keylen] = key
            # append to the bucket's chain, as uWSGI does
            bucket = self._bucket(h)
            last = _U32.unpack_from(self.mm, bucket)[0]
            prev = 0
            if not last:
                _U32.pack_into(self.mm, bucket, slot)
            else:
                while True:
                    nxt = self._item(last)[6]
                    if not nxt:
                        break
                    last = nxt
                p = list(self._item(last))
                p[6] = slot
                self._put_item(last, p)
                prev = last
            self._put_item(slot, (h, keylen, vallen, first, expires, prev, 0, 0, 0, 0, 0))
            if self.purge_lru:
                self._lru_add(slot)
            self._add(_N_ITEMS, 1)
            return True

    def _update(self, slot, value, expires, flags, now):
        it = list(self._item(slot))
        vallen = len(value)
        if not flags & FIXEXPIRE:
            if self.purge_lru:
                self._lru_remove(slot)
                self._lru_add(slot)
                it = list(self._item(slot))
            if expires:
                expires += now
                ns = self._h(_NEXT_SCAN)
                if not ns or ns > expires:
                    self._seth(_NEXT_SCAN, expires)
            it[4] = expires
        old_first, old_size = it[3], it[2]
        old_off = self.data + old_first * self.blocksize
        current = self.mm[old_off:old_off + 8] if flags & MATH else None
        if self.bitmap:
            # free the old blocks first so that a value can grow in place
            self._mark(old_first, self._needed(old_size), False)
            first = self._take_blocks(vallen)
            if first < 0:
                self._mark(old_first, self._needed(old_size), True)
                self._full(now)
                return False
            it[3] = first
        off = self.data + it[3] * self.blocksize
        if flags & MATH:
            num = _wrap64(self._math(_I64.unpack(current.ljust(8, b'\0'))[0], _I64.unpack(value)[0], flags))
            _I64.pack_into(self.mm, off, num)
        else:
            self.mm[off:off + vallen] = value
        it[2] = vallen
        self._put_item(slot, it)
        return True

    @staticmethod
    def _math(num, delta, flags):
        if flags & INC:
            return num + delta
        if flags & DEC:
            return num - delta
        if flags & MUL:
            return num * delta
        if delta == 0:
            return 0
        q = abs(num) // abs(delta)   # C's division truncates toward zero
        return q if (num < 0) == (delta < 0) else -q

    def math(self, key, delta, expires, op):
        return self.set(key, _I64.pack(_wrap64(delta)), expires, UPDATE | MATH | FIXEXPIRE | op)

    def num(self, key):
        value = self.get(key)
        if value is None or len(value) != 8:
            return 0
        return _I64.unpack(value)[0]

    # ---- start-up: load-file-in-cache, add-cache-item ------------------------------------------------------

    def claim_loading(self):
        """True in the first process of this start to ask: it stores the configured items."""
        with self:
            if _U32.unpack_from(self.mm, _LOADED)[0]:
                return False
            _U32.pack_into(self.mm, _LOADED, 1)
            return True


class Caches(object):
    """The instance's caches by name; the first one is the default (uWSGI's: 'default' when `cache` is set)."""

    def __init__(self, conf, log):
        self.list = [Cache(c, log) for c in conf['caches']]
        self.by_name = dict((c.name, c) for c in self.list)
        self.default = self.list[0]
        first = self.default
        if first.claim_loading():
            self._load(conf.get('loads') or (), log)

    def get(self, name):
        if name is None or name == '':
            return self.default
        return self.by_name.get(name)

    def after_fork(self):
        for c in self.list:
            c.after_fork()

    def _load(self, loads, log):
        for item in loads:
            cache = self.get(item.get('cache'))
            key = item['key'].encode('utf-8', 'surrogateescape')
            if item.get('file') is not None:
                try:
                    with open(item['file'], 'rb') as f:
                        value = f.read()
                except OSError as e:
                    log('[cache-error] unable to read file "%s" (%s)' % (item['key'], e.strerror or e))
                    continue
                if item.get('gzip'):
                    import gzip
                    value = gzip.compress(value)
            else:
                value = item['value'].encode('utf-8', 'surrogateescape')
            if cache.set(key, value):
                log('[cache%s] stored "%s" in "%s"' % ('-gzip' if item.get('gzip') else '', item['key'], cache.name))
            else:
                log('[cache-error] unable to store "%s" in "%s"' % (item['key'], cache.name))
