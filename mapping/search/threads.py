"""Keep BLAS single-threaded while a search runs.

The search's matrices are tiny (tens of rows by tens of columns); multithreaded BLAS only adds
synchronisation, and on a shared 2-core machine its spinning threads fight other processes
(measured: one policy gradient 50 ms with OpenBLAS threads vs 1.5 ms with one). threadpoolctl
(installed with scikit-learn) limits the pools for the duration; without it this is a no-op.
"""
from __future__ import annotations

import contextlib


def blas_single_thread():
    """A context manager limiting BLAS pools to one thread (no-op without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")
