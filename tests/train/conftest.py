"""Shared fixtures of the training tests: one torch thread (small, reproducible training: the
resume and rewind checks compare bit for bit) and scikit-learn's digits (real held-out data)."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _train_one_thread(one_thread):
    """Every training test on one torch thread (tests/conftest.py's one_thread)."""
    yield


@pytest.fixture(scope="module")
def digits():
    """1400 training images in batches of 50, 397 held out (a fixed seeded split)."""
    sklearn = pytest.importorskip("sklearn.datasets")
    d = sklearn.load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    train = [(x[i:i + 50], y[i:i + 50]) for i in range(0, 1400, 50)]
    return train, [(x[1400:], y[1400:])]
