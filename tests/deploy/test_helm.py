"""deploy/helm/topicbridge: `helm lint` and `helm template` pass, and what they render is what the
chart promises (replicas without session affinity, the engine StatefulSet for lite, probes on
/healthz and /readyz, resources, non-root) and a configuration the gateway accepts.

helm is looked for on PATH and in $TB_TOOLS_DIR (default ~/.cache/topicbridge-tools), where
`make test` builds it with Go when missing. Without helm the tests skip, except under CI=true."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import tomllib
from pathlib import Path

import pytest
import yaml

from gateway.settings import load as load_settings
from tests.deploy.compose import DEPLOY

CHART = DEPLOY / "helm" / "topicbridge"
TOKEN = ["--set", "auth.bearerTokens=helm-check-token"]
TOOLS = Path(os.environ.get("TB_TOOLS_DIR", Path.home() / ".cache" / "topicbridge-tools"))


def find_helm() -> str | None:
    cached = TOOLS / "helm"
    return shutil.which("helm") or (str(cached) if os.access(cached, os.X_OK) else None)


@pytest.fixture(scope="module")
def helm() -> str:
    found = find_helm()
    if found:
        return found
    reason = f"no helm on PATH or in {TOOLS}; `make test` builds it when Go is installed (make helm)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def run(helm: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120)


def render(helm: str, *args: str) -> dict[tuple[str, str], dict]:
    done = run(helm, "template", "tb", str(CHART), *args)
    assert done.returncode == 0, done.stderr
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in yaml.safe_load_all(done.stdout) if doc}


def gateway_container(objects: dict) -> dict:
    return objects["Deployment", "tb-topicbridge-gateway"]["spec"]["template"]["spec"]["containers"][0]


def gateway_settings(objects: dict) -> dict:
    """The settings a gateway pod would load: the chart's config file and environment."""
    env = {var["name"]: var.get("value", "a-token-from-the-secret") for var in gateway_container(objects)["env"]}
    config = objects["ConfigMap", "tb-topicbridge"]["data"]["config.toml"]
    tomllib.loads(config)       # a TOML syntax error fails here, with its line
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "config.toml"
        path.write_text(config)
        return load_settings(env=env | {"TOPICBRIDGE_CONFIG": str(path)})


def test_chart_passes_helm_lint(helm):
    done = run(helm, "lint", "--strict", str(CHART), *TOKEN)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("backend", ["kafka", "rocketmq"])
def test_chart_passes_helm_lint_on_the_broker_backends(helm, backend):
    done = run(helm, "lint", "--strict", str(CHART), *TOKEN, "--set", f"backend={backend}")
    assert done.returncode == 0, done.stdout + done.stderr


def test_default_release_runs_replicated_gateways_without_session_affinity_on_an_engine_statefulset(helm):
    objects = render(helm, *TOKEN)
    deployment = objects["Deployment", "tb-topicbridge-gateway"]
    assert deployment["spec"]["replicas"] == 2
    assert objects["Service", "tb-topicbridge"]["spec"]["sessionAffinity"] == "None"
    engine = objects["StatefulSet", "tb-topicbridge-engine"]
    assert engine["spec"]["replicas"] == 1 and engine["spec"]["volumeClaimTemplates"]
    assert objects["Service", "tb-topicbridge-engine"]["spec"]["clusterIP"] == "None"
    settings = gateway_settings(objects)
    assert (settings["backend"], settings["lite"]["mode"]) == ("lite", "remote")
    assert settings["lite"]["target"] == "tb-topicbridge-engine:7600"


def test_gateway_pods_have_probes_resources_and_run_as_non_root(helm):
    objects = render(helm, *TOKEN)
    container = gateway_container(objects)
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    pod = objects["Deployment", "tb-topicbridge-gateway"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    # Service links would put TOPICBRIDGE_PORT=tcp://... into the environment, read as a setting.
    assert pod["enableServiceLinks"] is False
    engine = objects["StatefulSet", "tb-topicbridge-engine"]["spec"]["template"]["spec"]["containers"][0]
    assert engine["readinessProbe"] and engine["livenessProbe"] and engine["resources"]["requests"]


def test_config_values_become_the_gateways_configuration(helm):
    objects = render(helm, *TOKEN, "--set", "config.gateway.a2a_wait_seconds=42",
                     "--set", "config.observability.log_level=debug", "--set", "gateway.replicas=5")
    settings = gateway_settings(objects)
    assert settings["gateway"]["a2a_wait_seconds"] == 42
    assert settings["observability"]["log_level"] == "debug"
    assert objects["Deployment", "tb-topicbridge-gateway"]["spec"]["replicas"] == 5


@pytest.mark.parametrize(("backend", "setting", "expected"), [
    ("kafka", ("kafka", "bootstrap_servers"), "kafka:9092"),
    ("rocketmq", ("rocketmq", "admin"), "rocketmq-namesrv:9876"),
])
def test_broker_backends_have_no_engine_and_point_the_gateway_at_the_broker(helm, backend, setting, expected):
    objects = render(helm, *TOKEN, "--set", f"backend={backend}")
    assert not [key for key in objects if key[0] == "StatefulSet"]
    settings = gateway_settings(objects)
    assert settings["backend"] == backend
    assert settings[setting[0]][setting[1]] == expected


def test_an_existing_secret_supplies_the_bearer_tokens(helm):
    objects = render(helm, "--set", "auth.existingSecret=my-tokens")
    assert not [key for key in objects if key[0] == "Secret"]
    token = {var["name"]: var for var in gateway_container(objects)["env"]}["TOPICBRIDGE_GATEWAY__BEARER_TOKENS"]
    assert token["valueFrom"]["secretKeyRef"]["name"] == "my-tokens"


@pytest.mark.parametrize(("args", "reason"), [
    ((), "refuses to listen beyond loopback without authentication"),
    (("--set", "backend=nats", *TOKEN), 'backend must be lite, kafka or rocketmq, not "nats"'),
    (("--set", "engine.enabled=false", *TOKEN), "gateway.replicas must be 1"),
    (("--set", "auth.bearerTokens=long-enough-token-1\\,short",), "auth.bearerTokens: each token needs at least 16 characters"),
])
def test_values_that_would_deploy_something_broken_are_refused_with_the_reason(helm, args, reason):
    done = run(helm, "template", "tb", str(CHART), *args)
    assert done.returncode != 0
    assert reason in done.stderr


def test_embedded_engine_with_one_replica_keeps_its_data_in_the_named_claim(helm):
    objects = render(helm, *TOKEN, "--set", "engine.enabled=false", "--set", "gateway.replicas=1",
                     "--set", "gateway.dataClaim=tb-data")
    pod = objects["Deployment", "tb-topicbridge-gateway"]["spec"]["template"]["spec"]
    data = {volume["name"]: volume for volume in pod["volumes"]}["data"]
    assert data["persistentVolumeClaim"]["claimName"] == "tb-data"
    assert gateway_settings(objects)["lite"]["mode"] == "embedded"
