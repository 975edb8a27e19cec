"""The uwsgi protocol, server side: read one request packet from a connection.

A packet is a 4-byte header (modifier1: u8, datasize: u16 little-endian, modifier2: u8) followed by
`datasize` bytes of vars, each a u16-LE-length-prefixed key and a u16-LE-length-prefixed value. The request
body (CONTENT_LENGTH bytes) follows the vars.

Keys and values are decoded as latin-1, which maps bytes to code points one to one: that is what PEP 3333
asks of environ strings, and it lets the whole vars block be decoded once and sliced by byte offsets.
"""


class BadPacket(Exception):
    """The peer sent something that is not a valid uwsgi request; the message says what."""


def read_packet(recv, buffer_size):
    """Reads one packet with `recv(n)`. Returns (modifier1, modifier2, vars_end, data) where data holds the
    header, the vars and whatever part of the body arrived with them. Raises BadPacket."""
    data = recv(65536)
    if not data:
        raise BadPacket('connection closed before a request was sent')
    while len(data) < 4:
        more = recv(65536)
        if not more:
            raise BadPacket('truncated uwsgi header (%d of 4 bytes)' % len(data))
        data += more
    size = data[1] | (data[2] << 8)
    if size > buffer_size:
        raise BadPacket('uwsgi packet of %d bytes is larger than buffer-size %d '
                        '(raise buffer-size if such requests are legitimate)' % (size, buffer_size))
    end = 4 + size
    while len(data) < end:
        more = recv(65536)
        if not more:
            raise BadPacket('truncated uwsgi packet (%d of %d bytes)' % (len(data), end))
        data += more
    return data[0], data[3], end, data


def parse_vars(data, end, environ):
    """Adds the vars in data[4:end] to environ. Returns the number of vars. Raises BadPacket."""
    text = data[4:end].decode('latin-1')
    pos = 4
    base = 4
    count = 0
    try:
        while pos < end:
            klen = data[pos] | (data[pos + 1] << 8)
            kstart = pos + 2
            pos = kstart + klen
            vlen = data[pos] | (data[pos + 1] << 8)
            vstart = pos + 2
            pos = vstart + vlen
            if pos > end:
                break
            environ[text[kstart - base:kstart - base + klen]] = text[vstart - base:vstart - base + vlen]
            count += 1
    except IndexError:
        pos = end + 1
    if pos != end:
        raise BadPacket('uwsgi vars run past the end of the packet (malformed or truncated packet)')
    return count
