"""Fixtures shared by the prompt-session tests."""

import pytest


@pytest.fixture(scope="module")
def real_ct(ct_small, shared_data):
    """The real CT (3 mm, 122 x 101 x 30) and its TotalSegmentator v2 labels (z, y, x array)."""
    import SimpleITK as sitk

    seg = sitk.ReadImage(str(shared_data / "totalseg_example" / "example_seg.nii.gz"))
    return ct_small, sitk.GetArrayFromImage(seg)
