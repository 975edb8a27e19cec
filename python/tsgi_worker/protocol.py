"""The uwsgi protocol, server side: read one request packet from a connection.

A packet is a 4-byte header (modifier1: u8, datasize: u16 little-endian, modifier2: u8) followed by
`datasize` bytes of vars, each a u16-LE-length-prefixed key and a u16-LE-length-prefixed value. The request
body (CONTENT_LENGTH bytes) follows the vars.

Keys and values are decoded as latin-1, which maps bytes to code points one to one: that is what PEP 3333
asks of environ strings, and it lets the whole vars block be decoded once and sliced by byte offsets.
"""


class BadPacket(Exception):
    """The peer sent something that is not a valid uwsgi request; the message says what."""


READ_SIZE = 16384


def read_packet(recv, buffer_size, data=None, before_wait=None):
    """Reads one packet with `recv(n)`. Returns (modifier1, modifier2, vars_end, data) where data holds the
    header, the vars and whatever part of the body arrived with them. Raises BadPacket.

    `data` is what a first non-blocking read already got (usually the whole request: front servers write it
    right after connecting); `before_wait` is called once before the first read that may block (it arms the
    socket's timeout, which a request that arrived whole never needs)."""
    if data is None:
        if before_wait is not None:
            before_wait()
            before_wait = None
        data = recv(READ_SIZE)
    if not data:
        raise BadPacket('connection closed before a request was sent')
    while len(data) < 4:
        if before_wait is not None:
            before_wait()
            before_wait = None
        more = recv(READ_SIZE)
        if not more:
            raise BadPacket('truncated uwsgi header (%d of 4 bytes)' % len(data))
        data += more
    size = data[1] | (data[2] << 8)
    if size > buffer_size:
        raise BadPacket('uwsgi packet of %d bytes is larger than buffer-size %d '
                        '(raise buffer-size if such requests are legitimate)' % (size, buffer_size))
    end = 4 + size
    while len(data) < end:
        if before_wait is not None:
            before_wait()
            before_wait = None
        more = recv(READ_SIZE)
        if not more:
            raise BadPacket('truncated uwsgi packet (%d of %d bytes)' % (len(data), end))
        data += more
    return data[0], data[3], end, data


def parse_vars_py(data, end, environ):
    """Adds the vars in data[4:end] to environ. Returns False when they do not fill data[4:end] exactly (the
    packet is malformed or truncated): the caller refuses the request.

    The whole header is decoded once (latin-1 keeps byte offsets), so each var is two slices of one str. This
    is the reference: _speedups.parse_vars (native/tsgi_speedups.c) does the same in C where it was built."""
    text = data[:end].decode('latin-1')
    pos = 4
    try:
        while pos < end:
            k = pos + 2
            v = k + (data[pos] | data[pos + 1] << 8)
            pos = v + 2 + (data[v] | data[v + 1] << 8)
            environ[text[k:v]] = text[v + 2:pos]
    except IndexError:
        return False
    return pos == end


try:
    from ._speedups import parse_vars
except ImportError:
    # Not built for this interpreter (no compiler or no Python headers at install): the same, in Python.
    parse_vars = parse_vars_py

MALFORMED_VARS = 'uwsgi vars run past the end of the packet (malformed or truncated packet)'
