"""deploy/, tested for real where this machine can: the shipped deploy/dagster.yaml on a real PostgreSQL
server, and its Kubernetes run launcher and the Helm values built into the Job a run would get.

- A throwaway PostgreSQL on 127.0.0.1 (tests/pg_server.py) holds an instance made from deploy/dagster.yaml
  with only `run_launcher` swapped for the default one (there is no cluster): storage, run queue,
  concurrency, run retries and retention are the shipped ones. The inbox sensor adds a SKU there, the SKU is
  made end to end with the tiny models, and a second instance object on the same database reads the run, the
  five materializations, the per-SKU checks and the partition back.
- The K8s run launcher's config is validated by dagster_k8s's own schema, and dagster_k8s builds from it the
  Job it would submit for a run (only the API call is caught): a GPU, GPU nodes, the env and the Postgres
  password. The Helm values get the same treatment through the chart's mapping of them, and are compared
  with deploy/dagster.yaml.

CI installs Debian's postgresql and sets PRODVID_REQUIRE_POSTGRES=1, so there the Postgres test cannot skip.
"""

import os
import re
import sys
import uuid
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._config import process_config
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.instance.config import dagster_instance_config
from dagster._core.launcher import LaunchRunContext
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
from dagster._core.storage.dagster_run import DagsterRun
from dagster_k8s import K8sRunLauncher
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage
from dgtest import BRIEF, defs, drop_sku, inbox_tick

from pg_server import find_postgres, start_postgres
from prodvid_dagster.defs.jobs import GPU_RUN_TAG
from prodvid_dagster.partitions import sku_partitions

REPO = Path(__file__).resolve().parents[2]
DEPLOY_YAML = REPO / "deploy" / "dagster.yaml"
HELM_VALUES = REPO / "deploy" / "helm" / "values.yaml"
ASSETS = ("expanded_canvas", "mask", "hero_image", "frames", "video")
CHECKS = {"hero_product_exact", "frames_product_exact", "frames_not_blank", "video_decodes"}
SKU = "PG-1"
# What the root dagster.yaml and deploy/dagster.yaml must agree on: one machine or many, the same policy.
SHARED_SETTINGS = ("telemetry", "nux", "concurrency", "run_retries", "retention")
# The top-level keys of the chart's values (schema/charts/dagster/values.py, DagsterHelmValues, chart 1.13):
# the chart ignores any other key, so a misspelt one would silently drop a setting.
HELM_TOP_LEVEL_KEYS = {
    "global", "nameOverride", "fullnameOverride", "rbacEnabled", "imagePullSecrets", "dagsterWebserver",
    "dagster-user-deployments", "postgresql", "generatePostgresqlPasswordSecret",
    "generateCeleryConfigSecret", "rabbitmq", "redis", "flower", "ingress", "computeLogManager", "scheduler",
    "runLauncher", "pythonLogs", "dagsterDaemon", "busybox", "migrate", "telemetry", "serviceAccount",
    "retention", "concurrency", "additionalInstanceConfig", "extraManifests", "pipelineRun",
}  # fmt: skip


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


# --- the instance on Postgres ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres():
    """A fresh PostgreSQL for this module on 127.0.0.1, stopped by its pid afterwards. Without the server
    binaries the tests that need it skip, or fail where PRODVID_REQUIRE_POSTGRES is set (CI)."""
    bindir, why = find_postgres()
    if bindir is None:
        if os.environ.get("PRODVID_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL is required (PRODVID_REQUIRE_POSTGRES is set) but cannot run: {why}")
        pytest.skip(why)
    server, stop = start_postgres()
    try:
        yield server
    finally:
        stop()


@pytest.fixture
def pg_home(postgres, tmp_path, monkeypatch, fast_env):
    """A DAGSTER_HOME whose dagster.yaml is deploy/dagster.yaml with `run_launcher` swapped for the default
    launcher, nothing else changed, and the DAGSTER_PG_* variables pointing at the test server."""
    for name, value in postgres.env.items():
        monkeypatch.setenv(name, value)
    config = load_yaml(DEPLOY_YAML)
    config["run_launcher"] = {"module": "dagster", "class": "DefaultRunLauncher"}
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def test_deploy_dagster_yaml_keeps_the_local_settings_and_validates():
    deploy, local = load_yaml(DEPLOY_YAML), load_yaml(REPO / "dagster.yaml")
    assert {key: deploy[key] for key in SHARED_SETTINGS} == {key: local[key] for key in SHARED_SETTINGS}
    assert set(deploy["storage"]) == {"postgres"}
    assert deploy["run_launcher"]["class"] == "K8sRunLauncher"
    assert deploy["run_coordinator"]["class"] == "QueuedRunCoordinator"

    # the whole file against Dagster's instance schema (it raises on an unknown or ill-typed key)
    config, _ = dagster_instance_config(str(DEPLOY_YAML.parent))
    assert config["storage"]["postgres"]["postgres_db"]["port"] == {"env": "DAGSTER_PG_PORT"}


def test_sku_made_end_to_end_on_postgres_and_read_back(pg_home, store):
    with dg.DagsterInstance.from_config(str(pg_home)) as instance:
        # the shipped settings, on Postgres, with the default launcher in place of the cluster's
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert type(instance.run_launcher).__name__ == "DefaultRunLauncher"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        concurrency = instance.get_concurrency_config()
        assert concurrency.pool_config.default_pool_limit == 1
        assert concurrency.pool_config.pool_granularity.value == "run"
        (limit,) = concurrency.run_queue_config.tag_concurrency_limits
        assert (limit["key"], limit["limit"]) == (GPU_RUN_TAG, 1)
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        assert not instance.run_retries_retry_on_asset_or_op_failure

        # a photo and its brief land; the inbox sensor, evaluated against this instance, adds the SKU (applied
        # as the daemon applies it) and asks for its run
        drop_sku(store, SKU)
        drop_sku(store, "TYPO-9", {"promt": "a typo"})  # rejected: a partition that shows why
        tick = inbox_tick(instance)
        (run_request,) = tick.run_requests
        assert run_request.partition_key == SKU
        # evaluated again, the rejection is found already shown (the latest observation per partition, read
        # from Postgres), so only the ready SKU, read anew from a blank cursor, is observed again
        assert [e.partition for e in inbox_tick(instance).asset_events] == [SKU]

        # the run the sensor asked for, in process, writing its events to Postgres
        result = defs.resolve_job_def("prodvid").execute_in_process(
            instance=instance,
            partition_key=SKU,
            run_config=run_request.run_config,
            tags=run_request.tags,
        )
        assert result.success
        run_id = result.run_id

    # a second instance object on the same database sees all of it
    with dg.DagsterInstance.from_config(str(pg_home)) as fresh:
        assert isinstance(fresh.event_log_storage, PostgresEventLogStorage)
        assert fresh.get_dynamic_partitions(sku_partitions.name) == [SKU, "TYPO-9"]
        (typo,) = fresh.fetch_observations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("inbox"), asset_partitions=["TYPO-9"]), limit=5
        ).records
        assert "unknown field 'promt'" in typo.asset_observation.description
        run = fresh.get_run_by_id(run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags["dagster/partition"] == SKU and run.tags["prodvid/sku"] == SKU
        for asset in ASSETS:
            (record,) = fresh.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[SKU]), limit=5
            ).records
            assert record.run_id == run_id
            assert record.asset_materialization.partition == SKU
        hero = fresh.get_latest_materialization_event(dg.AssetKey("hero_image")).asset_materialization
        assert hero.metadata["seed"].value == BRIEF["seed"]
        checks = [
            e.get_dagster_event().event_specific_data
            for e in fresh.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        ]
        assert {c.check_name for c in checks} == CHECKS
        assert all(c.passed and c.partition == SKU for c in checks), [c.description for c in checks]


# --- the Kubernetes run launcher ---------------------------------------------------------------------------

KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: none, user: {token: none}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
"""
IMAGE = "registry.example.com/prodvid:test"


class _RecordingBatchApi:
    """Stands in for the Kubernetes batch API: keeps the Jobs it is asked to create."""

    def __init__(self):
        self.created = []

    def create_namespaced_job(self, body, namespace, **_):
        self.created.append((namespace, body))
        return body


def run_pod_job(launcher_config: dict, instance, tmp_path, container_context: dict | None = None):
    """The (namespace, V1Job) that K8sRunLauncher.launch_run submits for a run of the `prodvid` job, built by
    dagster_k8s from `launcher_config` (a dagster.yaml `run_launcher.config`) and, when given, the code
    location's container context. Fails on a key dagster_k8s does not know."""
    processed = process_config(K8sRunLauncher.config_type(), launcher_config)
    assert processed.success, [error.message for error in processed.errors]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    batch = _RecordingBatchApi()
    launcher = K8sRunLauncher(
        **{**processed.value, "load_incluster_config": False, "kubeconfig_file": str(kubeconfig)},
        k8s_client_batch_api=batch,
    )
    launcher.register_instance(instance)
    code = ModuleCodePointer("prodvid_dagster.definitions", "defs", working_directory=None)
    origin = RepositoryPythonOrigin(sys.executable, code, IMAGE, container_context=container_context)
    run = instance.add_run(
        DagsterRun(
            job_name="prodvid",
            run_id=str(uuid.uuid4()),
            job_code_origin=JobPythonOrigin("prodvid", origin),
            tags={GPU_RUN_TAG: "1", "dagster/partition": "SKU-1"},
        )
    )
    launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
    ((namespace, job),) = batch.created
    return namespace, job


def assert_gpu_run_pod(job, *, resources: dict, config_maps: set[str], secrets: set[str]) -> None:
    """A Job whose pod runs `dagster api execute_run` on the code location's image, on a GPU node, with one
    GPU and `resources`, the env of `config_maps` and `secrets`, and the Postgres password."""
    spec = job.spec.template.spec
    (container,) = spec.containers
    assert container.image == IMAGE
    assert container.args[:5] == [sys.executable, "-m", "dagster", "api", "execute_run"]
    for kind in ("requests", "limits"):
        quantities = getattr(container.resources, kind)
        assert quantities == {name: str(value) for name, value in resources[kind].items()}
        assert quantities["nvidia.com/gpu"] == "1"
    assert spec.node_selector == {"nvidia.com/gpu.present": "true"}
    tolerations = [(t.key, t.operator, t.effect) for t in spec.tolerations]
    assert tolerations == [("nvidia.com/gpu", "Exists", "NoSchedule")]
    assert {s.config_map_ref.name for s in container.env_from if s.config_map_ref} >= config_maps
    assert {s.secret_ref.name for s in container.env_from if s.secret_ref} >= secrets
    (password,) = [e for e in container.env if e.name == "DAGSTER_PG_PASSWORD"]
    assert password.value_from.secret_key_ref.key == "postgresql-password"


def test_k8s_run_launcher_config_makes_a_gpu_run_pod(instance, tmp_path):
    config = load_yaml(DEPLOY_YAML)["run_launcher"]["config"]
    namespace, job = run_pod_job(config, instance, tmp_path)
    assert namespace == "prodvid"
    assert job.spec.template.spec.service_account_name == "dagster"
    assert_gpu_run_pod(
        job, resources=config["resources"], config_maps={"prodvid-env"}, secrets={"prodvid-aws"}
    )

    # a misspelt key fails here, not in the cluster: at the top level (dagster's schema) and inside raw
    # Kubernetes config (the Kubernetes model)
    assert not process_config(K8sRunLauncher.config_type(), {**config, "job_namespce": "x"}).success
    typo = {**config, "run_k8s_config": {"pod_spec_config": {"node_selectr": {"gpu": "true"}}}}
    with pytest.raises(Exception, match="node_selectr"):
        run_pod_job(typo, instance, tmp_path)


# --- the Helm values -------------------------------------------------------------------------------------

RELEASE_NAMESPACE = "prodvid"
CHART_SERVICE_ACCOUNT = "dagster"
CHART_USER_ENV = "dagster-dagster-user-deployments-prodvid-user-env"


def helm_run_launcher_config(values: dict) -> dict:
    """`run_launcher.config` as the chart (1.13, templates/helpers/_helpers.tpl,
    `dagsterYaml.runLauncher.k8s`) writes it from `runLauncher.config.k8sRunLauncher`; helm is not installed
    here to render it."""
    k8s = values["runLauncher"]["config"]["k8sRunLauncher"]
    names = {"containerConfig": "container_config", "podSpecConfig": "pod_spec_config",
             "podTemplateSpecMetadata": "pod_template_spec_metadata", "jobSpecConfig": "job_spec_config",
             "jobMetadata": "job_metadata"}  # fmt: skip
    config = {
        "load_incluster_config": True,
        "job_namespace": k8s.get("jobNamespace") or RELEASE_NAMESPACE,
        "image_pull_policy": k8s["imagePullPolicy"],
        "service_account_name": CHART_SERVICE_ACCOUNT,
        "dagster_home": "/opt/dagster/dagster_home",
        "instance_config_map": "dagster-instance",
        "postgres_password_secret": values["global"]["postgresqlSecretName"],
        "env_config_maps": [m["name"] for m in k8s.get("envConfigMaps", [])],
        "env_secrets": [s["name"] for s in k8s.get("envSecrets", [])],
        "volumes": k8s.get("volumes", []),
        "volume_mounts": k8s.get("volumeMounts", []),
        "resources": k8s.get("resources"),
        "run_k8s_config": {names[key]: value for key, value in k8s.get("runK8sConfig", {}).items()},
    }
    return {key: value for key, value in config.items() if value is not None}


def helm_container_context(deployment: dict) -> dict:
    """What a user deployment with includeConfigInLaunchedRuns hands to the runs it launches, as the chart
    (charts/dagster-user-deployments, `dagsterUserDeployments.k8sContainerContext`) writes it."""
    k8s = {
        "image_pull_policy": deployment["image"]["pullPolicy"],
        "env_config_maps": [CHART_USER_ENV, *(m["name"] for m in deployment.get("envConfigMaps", []))],
        "env_secrets": [s["name"] for s in deployment.get("envSecrets", [])],
        "namespace": RELEASE_NAMESPACE,
        "service_account_name": f"{CHART_SERVICE_ACCOUNT}-user-deployments",
        "run_k8s_config": {"pod_spec_config": {"automount_service_account_token": True}},
    }
    if deployment.get("resources"):
        k8s["resources"] = deployment["resources"]
    return {"k8s": k8s}


def snake_case(value):
    """The chart's camelCase keys as dagster.yaml's snake_case ones (`tagConcurrencyLimits` ->
    `tag_concurrency_limits`), in nested dicts and lists."""
    if isinstance(value, list):
        return [snake_case(v) for v in value]
    if isinstance(value, dict):
        return {re.sub("([A-Z])", r"_\1", k).lower(): snake_case(v) for k, v in value.items()}
    return value


def test_helm_values_match_deploy_dagster_yaml_and_make_a_gpu_run_pod(instance, tmp_path):
    values, deploy = load_yaml(HELM_VALUES), load_yaml(DEPLOY_YAML)
    assert set(values) <= HELM_TOP_LEVEL_KEYS, set(values) - HELM_TOP_LEVEL_KEYS

    # the code location: prodvid's definitions from the image, store and models from env, AWS from a Secret
    user_code = values["dagster-user-deployments"]
    assert user_code["enabled"] and user_code["enableSubchart"]
    (deployment,) = user_code["deployments"]
    args = deployment["dagsterApiGrpcArgs"]
    module, attribute = args[args.index("--module-name") + 1], args[args.index("--attribute") + 1]
    assert module == "prodvid_dagster.definitions" and attribute == "defs"
    assert deployment["includeConfigInLaunchedRuns"]["enabled"]
    env = deployment["env"]
    assert env["PRODVID_STORE"].startswith("s3://") and env["PRODVID_DEVICE"] == "cuda"
    assert env["PRODVID_HERO_MODEL"] and env["PRODVID_FRAMES_MODEL"]
    assert [s["name"] for s in deployment["envSecrets"]] == ["prodvid-aws"]
    # resources here would reach every run pod through includeConfigInLaunchedRuns, over the launcher's
    assert "resources" not in deployment

    # the rest of the instance: the daemon, Postgres, and the settings of deploy/dagster.yaml
    daemon = values["dagsterDaemon"]
    assert daemon["enabled"] and daemon["runCoordinator"]["type"] == "QueuedRunCoordinator"
    assert snake_case(daemon["runRetries"]) == deploy["run_retries"]
    assert snake_case({k: daemon["runMonitoring"][k] for k in ("enabled", "startTimeoutSeconds")}) == {
        k: deploy["run_monitoring"][k] for k in ("enabled", "start_timeout_seconds")
    }
    assert values["concurrency"].pop("enabled") is True
    assert snake_case(values["concurrency"]) == deploy["concurrency"]
    assert values["retention"]["enabled"]
    assert snake_case(values["retention"]["sensor"]) == deploy["retention"]["sensor"]
    assert values["telemetry"] == deploy["telemetry"]
    assert values["additionalInstanceConfig"]["nux"] == deploy["nux"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    shipped = deploy["run_launcher"]["config"]
    assert values["global"]["postgresqlSecretName"] == shipped["postgres_password_secret"]
    postgres = values["postgresql"]
    external = postgres["postgresqlHost"] and not values["generatePostgresqlPasswordSecret"]
    assert postgres["enabled"] or external
    assert postgres["postgresqlScheme"] == deploy["storage"]["postgres"]["postgres_db"]["scheme"]

    # the run pod the chart's launcher config and the deployment's container context make together
    launcher = helm_run_launcher_config(values)
    namespace, job = run_pod_job(launcher, instance, tmp_path, helm_container_context(deployment))
    assert namespace == RELEASE_NAMESPACE
    assert_gpu_run_pod(
        job, resources=shipped["resources"], config_maps={CHART_USER_ENV}, secrets={"prodvid-aws"}
    )
    assert snake_case(launcher["run_k8s_config"]) == snake_case(shipped["run_k8s_config"])
