"""The nnU-Net engine runs tiny networks here: one torch thread for every test (see ``one_thread``)."""

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread(one_thread):
    """On a shared 2-core machine OpenMP barriers dominate tiny nets; one intra-op thread avoids them."""
