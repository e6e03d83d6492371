"""spark-submit.sh --dry-run: the exact command for each kind of master, and its refusals.

The jars come from a directory of empty stand-ins (CHILLFLOW_JARS_DIR), so nothing is resolved
and no JVM starts; the printed line is parsed back with shlex, as a shell would read it.
"""

from __future__ import annotations

import os
import shlex
import sys

import pytest

from tests.conftest import REPO_ROOT, run_command

SCRIPT = REPO_ROOT / "spark-submit.sh"
PACKAGES = "io.delta:delta-spark_4.2_2.13:4.4.0,org.postgresql:postgresql:42.7.8"


@pytest.fixture
def jars_dir(tmp_path):
    jars = tmp_path / "jars"
    jars.mkdir()
    for name in ("delta-spark_4.2_2.13-4.4.0.jar", "delta-storage-4.4.0.jar", "postgresql.jar"):
        (jars / name).write_bytes(b"")
    return jars


def submit(*args, **env_extra):
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SPARK_", "CHILLFLOW_", "EXECUTOR_", "DRIVER_", "NUM_EXEC"))
    }
    env.update({"PYTHON": sys.executable, "LOG_LEVEL": "WARNING", **env_extra})
    return run_command(["bash", str(SCRIPT), *args], env=env)


def dry_run(*args, **env_extra) -> tuple[dict[str, str], list[str]]:
    """Return the environment assignments and the argv that --dry-run prints."""
    done = submit("--dry-run", *args, **env_extra)
    assert done.returncode == 0, done.stderr
    words = shlex.split(done.stdout)
    split = next(i for i, word in enumerate(words) if "=" not in word)
    environment = dict(word.split("=", 1) for word in words[:split])
    return environment, words[split:]


def options(argv: list[str], name: str) -> list[str]:
    return [argv[i + 1] for i, word in enumerate(argv) if word == name]


def confs(argv: list[str]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in options(argv, "--conf"))


def test_local_default_ships_package_conf_and_jars(jars_dir):
    environment, argv = dry_run(
        "curate", "raw dir/yellow.parquet", "--month", "2025-01", CHILLFLOW_JARS_DIR=str(jars_dir)
    )

    assert argv[0].endswith("pyspark/bin/spark-submit")
    assert options(argv, "--master") == ["local[*]"]
    assert options(argv, "--deploy-mode") == ["client"]
    assert options(argv, "--name") == ["chillflow-curate"]
    assert options(argv, "--driver-memory") == ["4g"]
    assert options(argv, "--jars") == [",".join(str(p) for p in sorted(jars_dir.glob("*.jar")))]
    assert options(argv, "--py-files") == [str(REPO_ROOT / ".chillflow/dist/chillflow.zip")]
    shipped = options(argv, "--files")[0].split(",")
    assert shipped == sorted(str(p) for p in (REPO_ROOT / "conf").iterdir() if p.is_file())
    assert "--executor-memory" not in argv
    assert confs(argv)["spark.pyspark.python"] == sys.executable
    assert argv[-4:] == [
        str(REPO_ROOT / "jobs/curate.py"),
        "raw dir/yellow.parquet",
        "--month",
        "2025-01",
    ]
    assert environment == {
        "CHILLFLOW_CONF_DIR": str(REPO_ROOT / "conf"),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    assert (REPO_ROOT / ".chillflow/dist/chillflow.zip").is_file()


def test_standalone_takes_sizes_from_the_environment(jars_dir):
    _, argv = dry_run(
        "curate",
        "x.parquet",
        SPARK_MASTER="spark://10.0.0.5:7077",
        CHILLFLOW_JARS_DIR=str(jars_dir),
        DRIVER_MEMORY="2g",
        EXECUTOR_MEMORY="3g",
        EXECUTOR_CORES="2",
        TOTAL_EXECUTOR_CORES="8",
        SHUFFLE_PARTITIONS="64",
        SPARK_SUBMIT_EXTRA="--conf spark.ui.enabled=false",
    )

    assert options(argv, "--master") == ["spark://10.0.0.5:7077"]
    assert options(argv, "--driver-memory") == ["2g"]
    assert options(argv, "--executor-memory") == ["3g"]
    assert options(argv, "--executor-cores") == ["2"]
    assert options(argv, "--total-executor-cores") == ["8"]
    assert confs(argv)["spark.sql.shuffle.partitions"] == "64"
    assert confs(argv)["spark.ui.enabled"] == "false"
    assert options(argv, "--jars")  # local jar files: the driver serves them to executors
    assert argv.index("spark.ui.enabled=false") < argv.index(str(REPO_ROOT / "jobs/curate.py"))


def test_yarn_uses_packages_and_runs_the_driver_on_the_cluster():
    environment, argv = dry_run(
        "curate",
        "hdfs:///landing/yellow_tripdata_2025-01.parquet",
        SPARK_MASTER="yarn",
        SPARK_DEPLOY_MODE="cluster",
        NUM_EXECUTORS="6",
    )

    assert options(argv, "--packages") == [PACKAGES]
    assert "--jars" not in argv
    assert options(argv, "--num-executors") == ["6"]
    assert confs(argv)["spark.yarn.appMasterEnv.CHILLFLOW_CONF_DIR"] == "."
    assert confs(argv)["spark.pyspark.python"] == "python3"
    assert confs(argv)["spark.pyspark.driver.python"] == "python3"
    assert environment["PYSPARK_PYTHON"] == "python3"
    assert argv[-2:] == [
        str(REPO_ROOT / "jobs/curate.py"),
        "hdfs:///landing/yellow_tripdata_2025-01.parquet",
    ]


def test_kubernetes_cluster_mode_runs_the_project_inside_the_image():
    _, argv = dry_run(
        "curate",
        "s3a://lake/raw/yellow_tripdata_2025-01.parquet",
        SPARK_MASTER="k8s://https://k8s.example.com:6443",
        SPARK_DEPLOY_MODE="cluster",
        CHILLFLOW_IMAGE="registry.example.com/chillflow:0.1.0",
        CHILLFLOW_IMAGE_ROOT="/opt/chillflow",
    )

    assert options(argv, "--packages") == [PACKAGES]
    assert "--py-files" not in argv and "--files" not in argv
    assert confs(argv)["spark.kubernetes.container.image"] == "registry.example.com/chillflow:0.1.0"
    assert confs(argv)["spark.kubernetes.driverEnv.CHILLFLOW_CONF_DIR"] == "/opt/chillflow/conf"
    assert argv[-2:] == [
        "local:///opt/chillflow/jobs/curate.py",
        "s3a://lake/raw/yellow_tripdata_2025-01.parquet",
    ]


def test_jars_mode_can_be_forced(jars_dir):
    _, argv = dry_run(
        "curate", "x", CHILLFLOW_JARS_MODE="packages", CHILLFLOW_JARS_DIR=str(jars_dir)
    )

    assert options(argv, "--packages") == [PACKAGES]
    assert "--jars" not in argv


def test_job_may_be_a_script_path(jars_dir):
    _, argv = dry_run("jobs/curate.py", "x", CHILLFLOW_JARS_DIR=str(jars_dir))

    assert argv[-2:] == [str(REPO_ROOT / "jobs/curate.py"), "x"]


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["nope"], {}, "unknown job 'nope': expected one of:"),
        (["curate"], {"SPARK_MASTER": "mesos://m:5050"}, "SPARK_MASTER=mesos://m:5050: expected"),
        (
            ["curate"],
            {"SPARK_MASTER": "spark://m:7077", "SPARK_DEPLOY_MODE": "cluster"},
            "client mode only",
        ),
        (
            ["curate"],
            {"SPARK_MASTER": "k8s://https://k:6443", "SPARK_DEPLOY_MODE": "cluster"},
            "set CHILLFLOW_IMAGE_ROOT",
        ),
        (["curate"], {"CHILLFLOW_JARS_MODE": "maven"}, "expected jars or packages"),
        (["curate"], {"CHILLFLOW_CONF_DIR": "/nonexistent"}, "no chillflow.toml"),
    ],
)
def test_bad_settings_exit_2_with_a_reason(args, env, message):
    done = submit("--dry-run", *args, **env)

    assert done.returncode == 2
    assert message in done.stderr
    assert done.stdout == ""


def test_missing_jars_exit_8(tmp_path):
    empty = tmp_path / "jars"
    empty.mkdir()

    done = submit("--dry-run", "curate", "x", CHILLFLOW_JARS_DIR=str(empty))

    assert done.returncode == 8
    assert "lacks the jars delta-spark" in done.stderr


def test_help_lists_the_environment():
    done = submit("--help")

    assert done.returncode == 2
    assert "SPARK_MASTER" in done.stdout and "CHILLFLOW_JARS_MODE" in done.stdout


def test_local_driver_takes_the_jvm_options_of_the_configuration(jars_dir):
    _, argv = dry_run("curate", "x.parquet", CHILLFLOW_JARS_DIR=str(jars_dir))

    assert options(argv, "--driver-java-options") == [
        "-XX:+UseParallelGC -XX:CompileThresholdScaling=3"
        f" -Dlog4j2.configurationFile={REPO_ROOT / 'conf/log4j2.properties'}"
    ]


def test_dry_run_masks_secrets_in_extra_options(jars_dir):
    secrets = ("S3cr3t-k3y", "AKIA-Id", "Pw0rd-db", "NaCl-salt", "Pw1-url", "t0k3n")
    extra = (
        "--conf spark.hadoop.fs.s3a.secret.key=S3cr3t-k3y"
        " --conf spark.hadoop.fs.s3a.access.key=AKIA-Id"
        " --conf spark.executorEnv.DATABASE_URL=postgresql://loader:Pw0rd-db@db:5432/chillflow"
        " --conf spark.kubernetes.driverEnv.HASH_SALT=NaCl-salt"
        " --conf spark.jdbc.reference=postgresql://reader:Pw1-url@replica/chillflow"
        " --conf spark.hadoop.fs.azure.sas.fixed.TOKEN=t0k3n"
        " --conf spark.ui.enabled=false"
    )

    env = {"CHILLFLOW_JARS_DIR": str(jars_dir), "SPARK_SUBMIT_EXTRA": extra}
    done = submit("--dry-run", "curate", "x.parquet", **env)

    assert done.returncode == 0, done.stderr
    assert not [secret for secret in secrets if secret in done.stdout]
    settings = confs(shlex.split(done.stdout))
    for key in (
        "spark.hadoop.fs.s3a.secret.key",
        "spark.hadoop.fs.s3a.access.key",
        "spark.executorEnv.DATABASE_URL",
        "spark.kubernetes.driverEnv.HASH_SALT",
        "spark.hadoop.fs.azure.sas.fixed.TOKEN",
    ):
        assert settings[key] == "***"
    assert settings["spark.jdbc.reference"] == "postgresql://reader:***@replica/chillflow"
    assert settings["spark.ui.enabled"] == "false"
