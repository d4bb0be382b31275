"""Fixtures: see :mod:`tests.batch._fixtures` (shared with ``tests/cli/test_batch.py``)."""

from ._fixtures import cohort, nnunet_model, phantom_files, ray_address, real_cohort  # noqa: F401
