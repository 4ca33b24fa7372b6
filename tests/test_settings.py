"""Settings: one set of names for flags, env vars and Dagster config, checked as a whole before any work."""

import pytest

from prodvid_core import models
from prodvid_core.errors import SettingsError
from prodvid_core.run import Settings


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("size", 500, "`size` has to be a multiple of 8"),
        ("size", 32, "`size` has to be a multiple of 8, 64 or more but is 32"),
        ("fill", 0.0, "`fill` has to be in (0, 1]"),
        ("steps", 0, "`steps` has to be 1 or more but is 0"),
        ("guidance", -1.0, "`guidance` has to be 0 or more"),
        ("lookahead", -8, "`lookahead` has to be 0 or more"),
        ("max_window", 32, "`max_window` has to be 64 or more (model pixels)"),
        ("model_size", 500, "`model_size` has to be unset (the checkpoint's own) or a multiple of 8"),
        ("batch_size", 0, "`batch_size` has to be 1 or more but is 0"),
    ],
)
def test_a_setting_that_cannot_work_is_refused_naming_it_and_its_env_var(field, value, words):
    with pytest.raises(SettingsError, match=f"PRODVID_{field.upper()}") as info:
        Settings(**{field: value})
    assert words in str(info.value)


def test_env_vars_then_preset_then_overrides_checked_once_as_a_whole(monkeypatch):
    monkeypatch.setenv("PRODVID_MAX_WINDOW", "32")  # alone, below the smallest window
    monkeypatch.setenv("PRODVID_MODEL_SIZE", "1024")
    monkeypatch.setenv("PRODVID_BATCH_SIZE", "4")
    with pytest.raises(SettingsError, match="max_window"):
        Settings.from_env()
    settings = Settings.from_env("tiny", max_window=1024, steps=None)
    assert (settings.model_size, settings.max_window, settings.batch_size) == (1024, 1024, 4)
    assert settings.hero_model == settings.frames_model == models.TINY_PRESET
    assert settings.steps == Settings.steps  # None overrides nothing
    monkeypatch.setenv("PRODVID_BATCH_SIZE", "four")
    with pytest.raises(SettingsError, match="PRODVID_BATCH_SIZE must be a number"):
        Settings.from_env()
