"""This process's memory, from /proc (for %(rss) and %(vsz) in log formats)."""
import os

_PAGE = os.sysconf('SC_PAGE_SIZE')


def memory():
    """(rss, vsz) in bytes."""
    try:
        with open('/proc/self/statm') as f:
            vsz, rss = f.read().split()[:2]
        return int(rss) * _PAGE, int(vsz) * _PAGE
    except (OSError, ValueError):
        return 0, 0
