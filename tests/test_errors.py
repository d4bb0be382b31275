"""MedsegError messages: one neutral message, a hint per interface (CLI flags vs widget controls)."""

import pickle

import pytest

from napari_medseg.errors import InvalidInputError, MedsegError, WeightsNotFoundError, user_message


def test_hints_per_interface_and_str_is_the_cli_text():
    exc = WeightsNotFoundError("no weights for 'x'.", hints={"cli": "Pass --weights DIR.",
                                                             "gui": "Choose the folder under Weights."})
    assert isinstance(exc, FileNotFoundError) and isinstance(exc, MedsegError)
    assert exc.message == "no weights for 'x'."
    assert str(exc) == "no weights for 'x'. Pass --weights DIR."
    assert user_message(exc, "gui") == "no weights for 'x'. Choose the folder under Weights."
    assert user_message(exc, "cli") == str(exc)
    # an error raised without hints reads the same everywhere
    plain = InvalidInputError("spacing must be positive")
    assert str(plain) == user_message(plain) == "spacing must be positive"
    # exceptions cross process pools by pickling: the message survives
    assert str(pickle.loads(pickle.dumps(plain))) == "spacing must be positive"


def test_unknown_interface_is_refused_and_bugs_are_named():
    with pytest.raises(ValueError, match="unknown interface"):
        MedsegError("x", hints={"web": "y"})
    text = user_message(KeyError("spacing"))
    assert text.startswith("unexpected error (KeyError") and "log" in text


def test_missing_weights_speak_each_interface(monkeypatch, tmp_path):
    from napari_medseg.models import weights as wm

    monkeypatch.setenv("MEDSEG_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(WeightsNotFoundError) as info:
        wm.resolve_weights("hybrid-liver")
    assert "medseg weights import hybrid-liver" in str(info.value)
    gui = user_message(info.value, "gui")
    assert "under Checkpoint" in gui and "weights import" not in gui
