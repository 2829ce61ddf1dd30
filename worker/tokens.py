"""Tokens no other call has, in any process of the fleet, cheap enough for every call.

A job takes two: its claim's and its lease's at the provider. `uuid.uuid4()` reads
the kernel's random source each time (a system call) and builds a UUID object; with
thousands of jobs in flight that was a few percent of a worker's event loop. A token
here is 64 random bits drawn once per process (again in a forked child, which would
otherwise repeat its parent's) followed by a counter.
"""

from __future__ import annotations

import itertools
import os

__all__ = ["new_token"]


class _Source:
    def __init__(self) -> None:
        self.reseed()

    def reseed(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.count = itertools.count()


_source = _Source()
os.register_at_fork(after_in_child=_source.reseed)


def new_token() -> str:
    """A token unique to this call: this process's random prefix and its next number."""
    return f"{_source.prefix}{next(_source.count):x}"
