"""Claim and lease tokens: unique per call, and a forked child does not repeat its parent's."""

from __future__ import annotations

import os

from worker.tokens import new_token


def test_tokens_are_unique_and_a_forked_child_draws_its_own_prefix():
    made = [new_token() for _ in range(10_000)]
    assert len(set(made)) == len(made)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next token, to the parent
        os.write(write, new_token().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 100).decode()
    os.close(read)
    os.close(write)
    ours = new_token()
    assert child[:16] != ours[:16]  # a prefix of its own, not the parent's
    assert child not in made
