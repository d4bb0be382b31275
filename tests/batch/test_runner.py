"""The per-case function (:mod:`napari_medseg.batch.runner`) without subprocesses: the model
stays loaded across cases, failures become rows, and what makes a record "done"."""

from __future__ import annotations

from napari_medseg.batch import Case, CaseRunner, Settings, discover_cases
from napari_medseg.batch.records import model_identity, read_record


def test_nnunet_model_loaded_once_per_worker(cohort, tmp_path, nnunet_model, monkeypatch):
    from napari_medseg.inference import nnunet_predictor, segment

    loads = []
    original = nnunet_predictor.NnUNetPredictor.from_folder.__func__

    def counting(cls, *args, **kwargs):
        loads.append(args[0] if args else kwargs.get("folder"))
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(nnunet_predictor.NnUNetPredictor, "from_folder", classmethod(counting))
    settings = Settings(model=str(nnunet_model), model_id=model_identity(str(nnunet_model)))
    out = tmp_path / "out"
    try:
        runner = CaseRunner(settings, str(out), threads=1)
        cases, _ = discover_cases(cohort)
        rows = [runner.run(c) for c in cases[:3]]
    finally:
        segment.keep_models_loaded(False)
    assert [r["status"] for r in rows] == ["ok"] * 3
    assert len(loads) == 1  # three cases, one load
    # a record per case, naming the fingerprint and the output's hash
    rec = read_record(out, "case0")
    assert rec["fingerprint"] == settings.fingerprint() and rec["output_sha256"]
    # without the batch worker's setting, every call loads again
    rows = [runner.run(c) for c in cases[3:]]
    assert len(loads) == 2


def test_case_errors_are_rows_not_exceptions(tmp_path):
    runner = CaseRunner(Settings(model_id={"name": "hu-tissue"}), str(tmp_path / "out"))
    try:
        missing = Case("gone", str(tmp_path / "gone.nii.gz"), problem="gone.nii.gz: no such file")
        row = runner.run(missing)
        assert row["status"] == "error" and "no such file" in row["error"]
        text = tmp_path / "t.nii.gz"
        text.write_text("not an image")
        row = runner.run(Case("t", str(text)))
        assert row["status"] == "error" and "t.nii.gz" in row["error"]
    finally:
        from napari_medseg.inference.segment import keep_models_loaded

        keep_models_loaded(False)
