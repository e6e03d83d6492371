"""docker-compose.yml: valid against the Compose Specification and wired as the docs promise.

No Docker engine runs here, so the file is checked against the specification's JSON schema
(vendored in tests/data, see its README) and then for the points that make the cluster work:
two one-core workers, the pinned Spark version, one lake at one path, PostgreSQL with the schema.
"""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
import tomllib
import yaml

from tests.conftest import REPO_ROOT

SCHEMA = REPO_ROOT / "tests/data/compose-spec.json"
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def pinned_pyspark() -> str:
    dependencies = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"][
        "dependencies"
    ]
    (pin,) = [d for d in dependencies if d.replace(" ", "").startswith("pyspark==")]
    return pin.split("==")[1]


def runs(service: dict, main_class: str) -> bool:
    return main_class in service.get("command", [])


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def mounts(service: dict) -> dict[str, str]:
    """Named-volume mounts of a service as {target: volume}, short or long syntax."""
    found = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume.get("source"), volume["target"]
        found[target] = source
    return found


def test_file_is_valid_against_the_compose_specification(compose):
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)

    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))

    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors
    )


def test_schema_rejects_a_misspelled_key(compose):
    """The schema is strict enough to catch mistakes, so a pass means something."""
    schema = json.loads(SCHEMA.read_text())
    broken = {**compose, "services": {**compose["services"], "oops": {"imgae": "postgres:16"}}}

    with pytest.raises(jsonschema.ValidationError, match="imgae"):
        jsonschema.validate(broken, schema, cls=jsonschema.Draft7Validator)


def test_two_one_core_workers_register_with_the_master(services):
    (master_name,) = [name for name, s in services.items() if runs(s, MASTER_CLASS)]
    master = services[master_name]["command"]
    master_url = f"spark://{option(master, '--host')}:{option(master, '--port')}"
    workers = {name: s for name, s in services.items() if runs(s, WORKER_CLASS)}

    assert option(master, "--host") == master_name
    assert len(workers) == 2
    for name, worker in workers.items():
        command = worker["command"]
        assert command[command.index(WORKER_CLASS) + 1] == master_url, name
        assert option(command, "--cores") == "1", name
        assert worker["depends_on"][master_name]["condition"] == "service_healthy", name
    assert services["jobs"]["environment"]["SPARK_MASTER"] == master_url


def test_spark_containers_run_the_pinned_pyspark(services):
    version = pinned_pyspark()
    spark_services = {
        name: s
        for name, s in services.items()
        if runs(s, MASTER_CLASS) or runs(s, WORKER_CLASS) or name == "jobs"
    }
    dockerfile = (REPO_ROOT / "docker/Dockerfile").read_text()

    assert len(spark_services) == 4
    images = {s["image"] for s in spark_services.values()}
    assert len(images) == 1, f"master, workers and driver must share one image, not {images}"
    for name, service in spark_services.items():
        assert service["build"]["dockerfile"] == "docker/Dockerfile", name
        assert service["build"]["args"]["PYSPARK_VERSION"] == version, name
    assert f"ARG PYSPARK_VERSION={version}\n" in dockerfile
    assert 'pip install --no-cache-dir "pyspark==${PYSPARK_VERSION}" .' in dockerfile


def test_lake_is_one_shared_volume_at_one_path(compose, services):
    spark_services = [
        s
        for name, s in services.items()
        if runs(s, MASTER_CLASS) or runs(s, WORKER_CLASS) or name == "jobs"
    ]
    lake_dir = services["jobs"]["environment"]["CHILLFLOW_LAKE_DIR"]

    for service in spark_services:
        assert mounts(service).get(lake_dir) == "lake"
    assert "lake" in compose["volumes"]
    # Executors read the raw month that the driver names: the landing area is shared too.
    assert all(mounts(s).get("/data/landing") == "landing" for s in spark_services)


def test_postgres_serves_the_jobs_with_the_schema_initialised(services):
    postgres = services["postgres"]
    jobs = services["jobs"]
    init = services["db-init"]

    assert re.fullmatch(r"postgres:16(\.\d+)?(-\w+)?", postgres["image"])
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert init["command"] == ["python", "-m", "chillflow", "db", "init"]
    assert init["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert jobs["depends_on"]["db-init"]["condition"] == "service_completed_successfully"
    for service in (init, jobs):
        url = service["environment"]["DATABASE_URL"]
        assert re.fullmatch(r"postgresql://chillflow:\S+@postgres:5432/chillflow", url)


def test_long_running_services_have_healthchecks(services):
    one_shot = {"db-init", "jobs"}

    for name, service in services.items():
        if name not in one_shot:
            assert service["healthcheck"]["test"], name
            assert service["restart"] == "unless-stopped", name
    assert {"db-init", "jobs"} <= set(services)
    assert all(services[name]["restart"] == "no" for name in one_shot)


def test_jobs_service_runs_the_pipeline_through_spark_submit(services):
    script = REPO_ROOT / services["jobs"]["command"][0]
    text = script.read_text()

    assert script.is_file() and script.stat().st_mode & 0o111
    steps = re.findall(r"^\./spark-submit\.sh (\S+)", text, flags=re.MULTILINE)
    assert steps == ["pipeline"]


def test_image_ships_what_spark_submit_needs():
    dockerfile = (REPO_ROOT / "docker/Dockerfile").read_text()
    copied = {
        source
        for line in re.findall(r"^COPY (.+)$", dockerfile, flags=re.MULTILINE)
        for source in line.split()[:-1]
    }

    assert {"chillflow", "conf", "jobs", "spark-submit.sh", "docker/run-pipeline.sh"} <= copied
    assert all((REPO_ROOT / source).exists() for source in copied)
    assert "openjdk-17-jre-headless" in dockerfile
    assert "python -m chillflow jars path" in dockerfile
