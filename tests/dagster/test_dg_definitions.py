"""The definitions load, and the shipped dagster.yaml gives an instance with prodvid's settings."""

import shutil
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.instance.config import PoolGranularity
from dgtest import defs

from prodvid_dagster.resources import ModelsResource

REPO = Path(__file__).resolve().parents[2]


def test_definitions_load_with_everything_wired():
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    names = {key.path[-1] for key in graph.get_all_asset_keys()}
    assert names == {"inbox", "expanded_canvas", "mask", "hero_image", "frames", "video"}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.partitions_def.name == "sku" and node.group_name == "prodvid" and node.description
        made = key.path[-1] != "inbox"  # the inbox is observed, never made
        assert node.is_executable == made
        assert node.backfill_policy == (dg.BackfillPolicy.single_run() if made else None)
    assert graph.get(dg.AssetKey("expanded_canvas")).parent_keys == {dg.AssetKey("inbox")}
    assert {k.name for k in graph.asset_check_keys} == {
        "hero_product_exact",
        "frames_product_exact",
        "frames_not_blank",
        "video_decodes",
    }
    job = defs.resolve_job_def("prodvid")
    assert job.executor_def is dg.in_process_executor
    ops = {name: defs.resolve_assets_def(name).op for name in ("hero_image", "frames", "video")}
    assert (ops["hero_image"].pool, ops["frames"].pool, ops["video"].pool) == ("gpu", "gpu", None)
    assert ops["frames"].retry_policy.max_retries == 2
    assert job.run_tags["prodvid/gpu"] == "1"
    sensor = defs.resolve_sensor_def("inbox_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_shipped_dagster_yaml(tmp_path):
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        assert not instance.run_retries_retry_on_asset_or_op_failure
        assert not instance.telemetry_enabled
        pools = instance.get_concurrency_config().pool_config
        assert pools.pool_granularity == PoolGranularity.RUN and pools.default_pool_limit == 1
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
        assert {"key": "prodvid/gpu", "limit": 1} in limits


@pytest.mark.parametrize(
    ("env", "field", "value"),
    [
        ({"PRODVID_STEPS": "3"}, "steps", 3),
        ({"PRODVID_GUIDANCE": "4.5"}, "guidance", 4.5),
        ({"PRODVID_SIZE": "384"}, "size", 384),
        ({"PRODVID_MODEL_SIZE": "1024"}, "model_size", 1024),
        ({"PRODVID_SIZE": "384"}, "format", "384x384"),
        ({"PRODVID_FORMAT": "Portrait"}, "format", "portrait"),
        ({"PRODVID_ANCHOR": "right-third"}, "anchor", "right-third"),
        ({"PRODVID_MARGIN": "0.1"}, "margin", 0.1),
        ({"PRODVID_DTYPE": "float32"}, "dtype", "float32"),
        ({"PRODVID_PRESET": "tiny"}, "frames_model", "tiny"),
        ({"PRODVID_LORA": "a/b:0.5, ./c"}, "lora", ("a/b:0.5", "./c")),
        ({"PRODVID_COMPILE": "1"}, "compile", True),
        ({"PRODVID_VARIANT": "fp16"}, "variant", "fp16"),
    ],
)
def test_models_resource_reads_env_and_config_wins(monkeypatch, env, field, value):
    for name, raw in env.items():
        monkeypatch.setenv(name, raw)
    assert getattr(ModelsResource().settings(), field) == value
    assert ModelsResource(steps=9, preset="tiny").settings().steps == 9
    assert ModelsResource(lora=["x/y:2"], offload=True).settings().lora == ("x/y:2",)


def test_models_resource_has_a_field_for_every_setting():
    from dataclasses import fields

    from prodvid_core.run import Settings

    assert set(ModelsResource.model_fields) == {f.name for f in fields(Settings)} | {"preset"}
    # and both configuration tables a person reads list every one of them
    resources_doc = sys.modules[ModelsResource.__module__].__doc__
    dagster_md = (REPO / "docs" / "dagster.md").read_text()
    for name in ModelsResource.model_fields:
        assert f"| `ModelsResource.{name}` |" in resources_doc, f"resources.py's table lacks {name}"
        assert f"| `models.{name}` |" in dagster_md, f"docs/dagster.md's table lacks {name}"


def test_a_bad_env_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("PRODVID_STEPS", "many")
    with pytest.raises(Exception, match="PRODVID_STEPS must be a number"):
        ModelsResource().settings()
