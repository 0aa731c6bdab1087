"""Shared fixtures."""

import os

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):  # one of pytest-xdist's workers (pyproject's -n 2)
    # The workers share the machine's cores: a second intra-op thread each would oversubscribe
    # them, slowing every test. Subprocesses the tests start set their own threads.
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: a second intra-op thread only adds synchronisation (and, on a shared
    machine, waits for a descheduled worker). Restored afterwards for other test modules."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
