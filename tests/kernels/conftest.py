"""Fixtures of the kernel tests (their kernel ids come from kernel_catalog.py)."""
import pytest

from engine import _kernels as K


@pytest.fixture
def restore_threads():
    """Tests that change the kernels' thread count put it back."""
    n = K.get_num_threads()
    yield n
    K.set_num_threads(n)
