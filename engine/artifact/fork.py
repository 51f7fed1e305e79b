"""Loaded artifacts across os.fork(): fork waits for every artifact's call in flight.

A Relax VM keeps the state of the call it is running (its frames, registers, program counter)
in the VM object, and an artifact's call holds the artifact's lock for its whole length. A
process forked while another thread was inside `art(x)` would copy both mid-call into a child
where that thread does not exist: the child's first call would wait forever on the lock, or,
without it, run the VM from a half-written frame (seen with apache-tvm 0.27: "Check failed:
reg < frame->register_file.size()"). So, as the kernels' bridge does for its layer caches, the
parent takes every live artifact's lock around fork() (os.register_at_fork): a fork waits for
the calls in flight to return (at most FORK_WAIT_S each), and both processes continue with
consistent VMs. An artifact whose call did not return in time is marked in the child, whose
calls then raise ArtifactError saying to load the artifact again there, instead of hanging.
"""
from __future__ import annotations

import os
import threading
import weakref

FORK_WAIT_S = 60.0

_live: "weakref.WeakSet" = weakref.WeakSet()
_held: list = []
_missed: list = []


def track(artifact) -> None:
    """Guard `artifact` (a LoadedArtifact: its `_lock` and `_forked_mid_call`) across fork."""
    _live.add(artifact)


def _before() -> None:
    _held.clear()
    _missed.clear()
    for art in sorted(list(_live), key=id):       # one order: no two forks deadlock
        if art._lock.acquire(timeout=FORK_WAIT_S):
            _held.append(art)
        else:
            _missed.append(art)


def _after_in_parent() -> None:
    for art in _held:
        art._lock.release()
    _held.clear()
    _missed.clear()


def _after_in_child() -> None:
    for art in _held:
        art._lock.release()
    for art in _missed:       # its VM is mid-call in a thread that does not exist here
        art._lock = threading.Lock()
        art._forked_mid_call = True
    _held.clear()
    _missed.clear()


os.register_at_fork(before=_before, after_in_parent=_after_in_parent,
                    after_in_child=_after_in_child)
