"""Lesion geometry the liver widget uses to show a lesion."""

import dataclasses

from napari_medseg.analysis.lesions import Lesion


def test_view_point_is_the_centroid_on_the_long_axis_slice():
    values = {f.name: 0 for f in dataclasses.fields(Lesion)}
    values.update(axial_slice=7, centroid_vox=[5.4, 10.25, 20.5], slice_range=(3, 9))
    lesion = Lesion(**values)
    assert lesion.view_point_vox == (7.0, 10.25, 20.5)
