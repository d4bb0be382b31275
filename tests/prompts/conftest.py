"""Fixtures shared by the prompt-session tests."""

import pytest


@pytest.fixture(scope="module")
def real_ct(ct_small, shared_data):
    """The real CT (3 mm, 122 x 101 x 30) and its TotalSegmentator v2 labels (z, y, x array)."""
    import SimpleITK as sitk

    seg = sitk.ReadImage(str(shared_data / "totalseg_example" / "example_seg.nii.gz"))
    return ct_small, sitk.GetArrayFromImage(seg)


@pytest.fixture(scope="module")
def real_ct_fine(real_ct):
    """The real CT resampled to 1.5 mm (linear image, nearest labels) by the protocol's
    own resampler: its 'real CT 1.5 mm' data set."""
    import sys
    from pathlib import Path

    import SimpleITK as sitk

    from napari_medseg.io.volume import Volume

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from bench_prompt import _resample

    volume, seg = real_ct
    image = volume.to_sitk()
    labels = sitk.GetImageFromArray(seg)
    labels.CopyInformation(image)
    fine_image, fine_labels = _resample(image, labels, 1.5)
    return Volume.from_sitk(fine_image, modality="CT"), sitk.GetArrayFromImage(fine_labels)


@pytest.fixture(scope="module")
def phantom_3mm():
    """The CT phantom on the protocol's grid (64 x 192 x 192 at 3 x 1.5 x 1.5 mm)."""
    from napari_medseg.phantom import make_phantom

    return make_phantom(seed=0, shape=(64, 192, 192), spacing_zyx=(3.0, 1.5, 1.5))


@pytest.fixture
def protocol():
    """The click protocol on a fresh default region-growing session:
    ``protocol(volume, reference, n_clicks)`` returns its ``ProtocolResult``."""
    from napari_medseg.prompts.region_growing import RegionGrowingSession
    from napari_medseg.testing.clicker import run_protocol

    def run(volume, reference, n_clicks=5):
        session = RegionGrowingSession()
        session.set_volume(volume)
        return run_protocol(session, reference, n_clicks=n_clicks)

    return run


@pytest.fixture
def first_click():
    """One click on a fresh default region-growing session with some options changed:
    ``first_click(volume, zyx, **options)`` returns the mask (e.g. ``thin_layers=False``)."""
    from napari_medseg.prompts.region_growing import RegionGrowingSession

    def run(volume, zyx, **options):
        session = RegionGrowingSession()
        for name, value in options.items():
            if not hasattr(session, name):
                raise AttributeError(f"RegionGrowingSession has no option {name!r}")
            setattr(session, name, value)
        session.set_volume(volume)
        return session.add_point(zyx).mask

    return run
