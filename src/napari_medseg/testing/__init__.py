"""Helpers for the test suite and benchmarks (parity tolerances); not used by the product."""

from .tolerance import PARITY_REL, assert_close_to_scale, scaled_error

__all__ = ["PARITY_REL", "assert_close_to_scale", "scaled_error"]
