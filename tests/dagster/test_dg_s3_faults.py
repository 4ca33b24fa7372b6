"""A store that keeps failing, in Dagster: the failed step's message names the SKU and the object's key.

moto behind the fault-injecting proxy (`tests/fault_proxy.py`) that answers every PUT with 503 SlowDown:
reads work, so the canvas is made, and the first write, the IO manager's `expanded_canvas/<SKU>.png`, fails
once botocore's retries (AWS_MAX_ATTEMPTS=2 here) are spent.
"""

import uuid

import pytest
from dgtest import defs, drop_sku

from fault_proxy import FaultProxy
from prodvid_core import layout
from prodvid_core.storage import S3Store
from prodvid_dagster.partitions import sku_partitions

SKU = "JAR-9"
pytestmark = pytest.mark.s3faults


def test_a_store_that_cannot_be_written_fails_the_step_naming_the_sku_and_key(
    instance, fast_env, monkeypatch, s3_endpoint
):
    bucket = f"prodvid-dg-faults-{uuid.uuid4().hex[:10]}"
    s3 = S3Store(bucket, "catalog", endpoint_url=s3_endpoint)
    s3.client.create_bucket(Bucket=bucket)
    drop_sku(s3, SKU)
    with FaultProxy(s3_endpoint, seed=0, rates={"slowdown": 1.0}, methods=("PUT",)) as proxy:
        monkeypatch.setenv("PRODVID_STORE", f"s3://{bucket}/catalog")
        monkeypatch.setenv("PRODVID_S3_ENDPOINT_URL", proxy.url)
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
        instance.add_dynamic_partitions(sku_partitions.name, [SKU])
        result = defs.resolve_job_def("prodvid").execute_in_process(
            partition_key=SKU, instance=instance, raise_on_error=False
        )
    assert not result.success
    (failure,) = result.get_step_failure_events()
    assert failure.step_key == "expanded_canvas"
    message = failure.step_failure_data.user_failure_data.description
    key = f"s3://{bucket}/catalog/{layout.canvas_png(SKU)}"
    assert message.startswith(f"SKU {SKU}: cannot write {key} "), message
    assert "SlowDown: Please reduce your request rate (after 2 attempts)" in message, message
    assert proxy.faults["slowdown"] == 2
    assert s3.list() == [layout.inbox_brief(SKU), layout.inbox_photo(SKU, ".png")]  # nothing written
