"""tests/ mirrors src/: every ``tests/<path>/test_<module>.py`` tests ``src/napari_medseg/<path>/<module>.py``.

So that "where are the tests of X?" has one answer. A private module's tests drop its
leading underscore (``tests/test_reader.py`` tests ``_reader.py``, ``tests/_ndimage/test_bbox.py``
tests ``_ndimage/_bbox.py``); a package's ``__init__.py`` is tested by ``test_<package>.py``
beside the package's folder. Bad input and fault cases live in the module's own test file,
under a ``# --- bad input and faults`` comment.
"""

from __future__ import annotations

from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
SRC = ROOT / "src" / "napari_medseg"

#: test modules that check the project rather than one source module
EXCEPTIONS = {
    "test_architecture.py": "the import-linter contracts (.importlinter)",
    "test_manifest.py": "the npe2 manifest (napari.yaml) and the light-import paths",
    "test_layout.py": "this rule",
    # one suite across every reader (NIfTI, NRRD, MetaImage, DICOM, DICOM-SEG) against other
    # tools' files and reference readers; per-module bad input stays in the module's tests
    "io/test_conformance.py": "conformance of napari_medseg.io's readers with other tools' files",
    # the benchmark's own data set (benchmarks/ is no package of the source tree)
    "prompts/test_protocol_resample.py": "the click protocol's 1.5 mm data set (benchmarks/bench_prompt.py)",
}

#: modules of the cohort runner and server tests still named by topic; their owners rename
#: them to the module they test (e.g. batch/test_runner.py), then the entry goes
NOT_YET_MIRRORED = {
}


def source_of(test_file: Path):
    """The source module a test module mirrors, or ``None`` when none exists."""
    rel = test_file.relative_to(TESTS)
    stem = rel.name[len("test_"):-len(".py")]
    folder = SRC.joinpath(*rel.parts[:-1])
    for candidate in (folder / f"{stem}.py", folder / f"_{stem}.py", folder / stem / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def test_every_test_module_mirrors_a_source_module():
    orphans = []
    for test_file in sorted(TESTS.rglob("test_*.py")):
        rel = test_file.relative_to(TESTS).as_posix()
        if rel in EXCEPTIONS or rel in NOT_YET_MIRRORED:
            continue
        if source_of(test_file) is None:
            orphans.append(rel)
    assert not orphans, (
        "test modules that mirror no source module (move each to tests/<package>/test_<module>.py "
        f"of the module whose behaviour it asserts): {orphans}")


def test_every_test_folder_is_a_package():
    """``__init__.py`` in every folder: same-named modules (``cli/test_segment.py``,
    ``inference/test_segment.py``) then import as distinct packages, without sys.path tricks."""
    missing = [p.relative_to(TESTS).as_posix() for p in sorted(TESTS.rglob("*"))
               if p.is_dir() and p.name != "__pycache__" and any(p.glob("test_*.py"))
               and not (p / "__init__.py").is_file()
               and p.relative_to(TESTS).parts[0] not in ("batch",)]
    assert not missing, f"test folders without __init__.py: {missing}"


def test_the_rule_can_fail():
    """A topic file (no such source module) is reported; a mirrored one and a private one are not."""
    assert source_of(TESTS / "gui" / "test_label_tools.py") is None
    assert source_of(TESTS / "robustness" / "test_readers.py") is None
    assert source_of(TESTS / "io" / "test_readers.py") == SRC / "io" / "readers.py"
    assert source_of(TESTS / "test_reader.py") == SRC / "_reader.py"
    assert source_of(TESTS / "_ndimage" / "test_bbox.py") == SRC / "_ndimage" / "_bbox.py"
