"""Settings: one set of names for flags, env vars and Dagster config, checked as a whole before any work."""

import pytest

from prodvid_core import models
from prodvid_core.errors import SettingsError
from prodvid_core.run import Settings


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("size", 501, "`size` has to be even, 64 to 3840 but is 501"),
        ("size", 32, "`size` has to be even, 64 to 3840 but is 32"),
        ("format", "tiktok", "`format` has to be one of square, portrait, story, landscape or WxH"),
        ("format", "1080x1919", "but is '1080x1919'"),
        ("anchor", "top", "`anchor` has to be one of bottom, center, left-third, right-third but is 'top'"),
        ("margin", 0.5, "`margin` has to be in [0, 0.4] but is 0.5"),
        ("fill", 0.0, "`fill` has to be in (0, 1]"),
        ("steps", 0, "`steps` has to be 1 or more but is 0"),
        ("guidance", -1.0, "`guidance` has to be 0 or more"),
        ("lookahead", -8, "`lookahead` has to be 0 or more"),
        ("max_window", 32, "`max_window` has to be 64 or more (model pixels) but is 32"),
        ("model_size", 500, "`model_size` has to be unset (the checkpoint's own) or a multiple of 8"),
        ("batch_size", 0, "`batch_size` has to be 1 or more but is 0"),
    ],
)
def test_a_setting_that_cannot_work_is_refused_naming_it_and_its_env_var(field, value, words):
    with pytest.raises(SettingsError, match=f"PRODVID_{field.upper()}") as info:
        Settings(**{field: value})
    assert words in str(info.value)


def test_env_vars_then_preset_then_overrides_checked_once_as_a_whole(monkeypatch):
    monkeypatch.setenv("PRODVID_STEPS", "0")  # alone, it cannot work
    monkeypatch.setenv("PRODVID_MODEL_SIZE", "1024")
    monkeypatch.setenv("PRODVID_BATCH_SIZE", "4")
    with pytest.raises(SettingsError, match="steps"):
        Settings.from_env()
    settings = Settings.from_env("tiny", steps=3, max_window=1024, guidance=None)
    assert (settings.steps, settings.max_window, settings.batch_size) == (3, 1024, 4)
    assert settings.model_size == 1024
    assert settings.hero_model == settings.frames_model == models.TINY_PRESET
    assert settings.guidance == Settings.guidance  # None overrides nothing
    monkeypatch.setenv("PRODVID_BATCH_SIZE", "four")
    with pytest.raises(SettingsError, match="PRODVID_BATCH_SIZE must be a number"):
        Settings.from_env()


def test_the_default_format_is_square_and_size_is_its_older_name(monkeypatch):
    for name in ("PRODVID_FORMAT", "PRODVID_SIZE", "PRODVID_ANCHOR", "PRODVID_MARGIN", "PRODVID_FILL"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert (settings.format, settings.output.size, settings.size) == ("square", (1080, 1080), None)
    assert (settings.anchor, settings.fill, settings.margin) == ("bottom", 0.7, 0.0)
    assert Settings(size=256).output.size == (256, 256) and Settings(size=256).format == "256x256"
    assert Settings(format="Story").format == "story"
    with pytest.raises(
        SettingsError, match="`size` \\(256\\) and `format` \\('story'\\) both set the output size"
    ):
        Settings(size=256, format="story")
    # env vars: each field's own; a flag for format or size replaces both env vars
    monkeypatch.setenv("PRODVID_FORMAT", "256x448")
    monkeypatch.setenv("PRODVID_ANCHOR", "left-third")
    monkeypatch.setenv("PRODVID_MARGIN", "0.1")
    settings = Settings.from_env()
    assert (settings.output.size, settings.anchor, settings.margin) == ((256, 448), "left-third", 0.1)
    assert Settings.from_env(size=128).output.size == (128, 128)
    monkeypatch.setenv("PRODVID_SIZE", "256")
    with pytest.raises(SettingsError, match="PRODVID_SIZE or PRODVID_FORMAT"):
        Settings.from_env()
    assert Settings.from_env(format="story").output.size == (1080, 1920)
    monkeypatch.delenv("PRODVID_FORMAT")
    assert Settings.from_env().output.size == (256, 256)
    monkeypatch.setenv("PRODVID_MARGIN", "wide")
    with pytest.raises(SettingsError, match="PRODVID_MARGIN must be a number"):
        Settings.from_env()


def test_framing_takes_each_field_from_the_brief_else_the_settings():
    from prodvid_core.brief import parse_brief
    from prodvid_core.run import framing

    settings = Settings(format="portrait", anchor="center", margin=0.05)
    plain = framing(parse_brief({"prompt": "x"}, sku="A"), settings)
    assert (plain.size, plain.anchor, plain.fill, plain.margin) == ((1080, 1350), "center", 0.7, 0.05)
    brief = parse_brief({"prompt": "x", "format": "story", "anchor": "right-third", "fill": 0.5}, sku="A")
    chosen = framing(brief, settings)
    assert (chosen.size, chosen.anchor, chosen.fill, chosen.margin) == (
        (1080, 1920),
        "right-third",
        0.5,
        0.05,
    )
