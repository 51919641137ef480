"""deploy/docker-compose.*.yml: valid, healthy-by-design and in step with what the tests run.

`docker compose config` checks them where the Compose plugin is installed; everywhere else (and in
addition) they are read as Compose reads them and checked against our own structural schema
(compose.schema.json) plus the rules below."""

from __future__ import annotations

import re
import shutil
import subprocess

import jsonschema
import pytest

from deploy.rocketmq import ROCKETMQ_VERSION
from gateway.settings import load as load_settings
from tests.deploy.compose import DEPLOY, ROOT, SCHEMA, MissingVariable, files, load, long_running, named_volumes

ENV = {"TOPICBRIDGE_TOKEN": "compose-check-token"}
BACKENDS = {"lite": "lite", "kafka": "kafka", "rocketmq": "rocketmq"}
# The services whose state must outlive a container: they mount a named volume.
STATEFUL = {"lite": ["engine"], "kafka": ["kafka"], "rocketmq": ["broker"]}


def variant(path) -> str:
    return path.name.removeprefix("docker-compose.").removesuffix(".yml")


@pytest.fixture(params=files(), ids=variant)
def compose_file(request):
    return request.param


def test_there_is_a_compose_file_for_each_backend():
    assert sorted(variant(path) for path in files()) == sorted(BACKENDS)


def test_compose_file_matches_the_compose_structure(compose_file):
    jsonschema.validate(load(compose_file, ENV), SCHEMA)


def test_structural_schema_rejects_a_misspelt_key_and_a_bad_duration():
    good = load(DEPLOY / "docker-compose.lite.yml", ENV)
    typo = good | {"services": good["services"] | {"gateway": good["services"]["gateway"] | {"healtcheck": {}}}}
    with pytest.raises(jsonschema.ValidationError, match="healtcheck"):
        jsonschema.validate(typo, SCHEMA)
    slow = {**good["services"]["engine"], "healthcheck": {"test": ["CMD", "true"], "interval": "10 seconds"}}
    with pytest.raises(jsonschema.ValidationError, match="10 seconds"):
        jsonschema.validate(good | {"services": {"engine": slow}}, SCHEMA)


def test_compose_file_refuses_to_start_without_a_token(compose_file):
    with pytest.raises(MissingVariable, match="TOPICBRIDGE_TOKEN"):
        load(compose_file, {})


def test_every_long_running_service_has_a_healthcheck_and_restarts(compose_file):
    for name, service in long_running(load(compose_file, ENV)).items():
        assert service.get("restart") in ("unless-stopped", "always", "on-failure"), name
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_stateful_services_keep_their_data_in_declared_named_volumes(compose_file):
    compose = load(compose_file, ENV)
    for name in STATEFUL[variant(compose_file)]:
        mounted = named_volumes(compose["services"][name])
        assert mounted, f"{name} mounts no named volume"
        assert set(mounted) <= set(compose.get("volumes", {})), f"{name} mounts an undeclared volume"


def test_services_start_after_what_they_depend_on_is_healthy_or_done(compose_file):
    compose = load(compose_file, ENV)
    for name, service in compose["services"].items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in compose["services"], f"{name} depends on unknown {dependency}"
            done = compose["services"][dependency].get("restart") == "no"
            assert rule["condition"] == ("service_completed_successfully" if done else "service_healthy"), name


def test_gateway_environment_is_a_valid_configuration_for_its_backend(compose_file):
    gateway = load(compose_file, ENV)["services"]["gateway"]
    env = {key: str(value) for key, value in gateway["environment"].items()}
    settings = load_settings(env=env)
    assert settings["backend"] == BACKENDS[variant(compose_file)]
    assert settings["gateway"]["bearer_tokens"], "a gateway listening beyond loopback needs a token"


def test_gateway_is_built_from_the_repository_dockerfile(compose_file):
    gateway = load(compose_file, ENV)["services"]["gateway"]
    assert (compose_file.parent / gateway["build"]["context"] / gateway["build"]["dockerfile"]).resolve() == ROOT / "Dockerfile"
    assert load(compose_file, ENV | {"BASE_IMAGE": "topicbridge-base:bookworm"})["services"]["gateway"]["build"]["args"] == \
        {"BASE_IMAGE": "topicbridge-base:bookworm"}


def test_kafka_image_is_the_version_the_tests_run():
    pom = (DEPLOY / "kafka" / "pom.xml").read_text()
    tested = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom).group(1)
    kafka = load(DEPLOY / "docker-compose.kafka.yml", ENV)["services"]["kafka"]
    assert kafka["image"] == f"apache/kafka:{tested}"


def test_rocketmq_images_are_the_version_the_tests_run():
    compose = load(DEPLOY / "docker-compose.rocketmq.yml", ENV)
    images = {service["image"] for name, service in compose["services"].items() if name != "gateway"}
    assert images == {f"apache/rocketmq:{ROCKETMQ_VERSION}"}


def compose_command() -> list[str] | None:
    if shutil.which("docker") and not subprocess.run(["docker", "compose", "version"], capture_output=True).returncode:
        return ["docker", "compose"]
    if not shutil.which("docker-compose"):
        return None
    # Compose v1 (Debian's docker-compose 1.29) predates the top-level `name` these files use.
    version = subprocess.run(["docker-compose", "version", "--short"], capture_output=True, text=True).stdout
    return ["docker-compose"] if version.strip().lstrip("v").startswith("2") else None


def test_docker_compose_config_accepts_the_file(compose_file, monkeypatch):
    command = compose_command()
    if command is None:
        pytest.skip("no Compose v2 (`docker compose` plugin or docker-compose 2.x) here; checked by the structural schema instead")
    monkeypatch.setenv("TOPICBRIDGE_TOKEN", ENV["TOPICBRIDGE_TOKEN"])
    done = subprocess.run([*command, "-f", str(compose_file), "config", "-q"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
