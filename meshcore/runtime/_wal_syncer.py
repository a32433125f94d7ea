"""The store's sync helper: fdatasync one file descriptor on request (see `_storage`).

It runs as a process of its own (``python -I -S _wal_syncer.py FD``, FD inherited from the
agent: its store's WAL file), so that waiting for the disk costs the agent's threads no
hand-overs of CPython's GIL. It imports nothing but the standard library's `os` and `sys`.

Protocol, over its stdin and stdout pipes: a request is an 8-byte big-endian sequence
number. The helper reads every request that has arrived, syncs the file once for all of
them, and answers with the last sequence number it read (8 bytes) and an errno (4 bytes,
big-endian, 0 for success). After a failed sync every later answer carries that first
error without syncing again: once dirty pages failed to reach the disk, the page cache can
no longer be trusted to hold them. It exits when its stdin closes (the agent closed the
store, or died) or its stdout does.
"""

from __future__ import annotations

import os
import sys

REQUEST_BYTES = 8
ANSWER_BYTES = 12


def no_wakeup_preemption() -> bool:
    """Make the calling thread SCHED_BATCH where Linux offers it (True if it now is).

    The store's writer thread and this helper are woken by the agent's trio thread. A
    normal thread woken that way may preempt its waker on the same core (and the writer
    then finds the GIL taken and sleeps again, while the trio thread waits for a core with
    the GIL in hand). A SCHED_BATCH thread does not preempt on wake-up; it runs at the
    next tick or on a free core, with the same share of the CPU. Measured on quorum puts
    (kv benchmark, 5 agents), for the writer thread: 0.934 of the CPU per put."""
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))  # 0: this thread, on Linux
    except (AttributeError, OSError):
        return False
    return True


def serve(fd: int, requests: int = 0, answers: int = 1) -> None:
    """Answer sync requests read from `requests` on `answers` until either closes."""
    no_wakeup_preemption()
    buffered = b""
    error = 0
    while True:
        data = os.read(requests, 65536)
        if not data:
            return
        buffered += data
        whole = len(buffered) - len(buffered) % REQUEST_BYTES
        if not whole:
            continue
        last, buffered = buffered[whole - REQUEST_BYTES:whole], buffered[whole:]
        if not error:
            try:
                os.fdatasync(fd)
            except OSError as exc:
                error = exc.errno or 5  # EIO if the OS gave no number
        try:
            os.write(answers, last + error.to_bytes(4, "big"))
        except BrokenPipeError:
            return


if __name__ == "__main__":
    serve(int(sys.argv[1]))
