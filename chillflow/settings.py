"""Settings: ``conf/`` and the environment, read once into frozen, validated dataclasses."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import tomllib

from chillflow.database_url import DatabaseUrl, parse_database_url
from chillflow.errors import ConfigError
from chillflow.schemas import SERVICES
from chillflow.sections import (
    YEARS,
    AggregateSettings,
    DownloadSettings,
    TripLoadSettings,
    check_keys,
    check_table,
    check_time_zone,
)

DEV_HASH_SALT = "chillflow-dev-salt-2025"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
ENVIRONMENTS = ("development", "production")
QUALITY_ACTIONS = ("warn", "quarantine", "fail")
_RULE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_MONTH = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent
#: The lake tables and their default locations inside the lake.
_TABLES = {
    "curated": "curated/trips",
    "quarantine": "curated/quarantine",
    "dq_metrics": "curated/dq_metrics",
    "kpis": "marts/zone_hourly_kpis",
}
_SECTIONS = ("paths", "tables", "spark", "curate", "trips", "aggregate", "download")
#: The keys of chillflow.toml ("") and of its sections parsed here.
_KEYS = {
    "": ("environment", "log_level", *_SECTIONS),
    "paths": ("data_dir", "lake_dir", "zone_lookup"),
    "tables": tuple(_TABLES),
    "spark": ("master", "app_name", "conf", "packages", "jars_dir", "ivy_dir"),
    "curate": ("data_time_zone",),
}
#: The keys of those sections whose value is a non-empty string.
_TEXT_KEYS = {
    "paths": ("data_dir", "lake_dir", "zone_lookup"),
    "spark": ("master", "app_name", "jars_dir", "ivy_dir"),
}
_RULE_KEYS = ("name", "predicate", "action", "max_failure_rate", "description")


@dataclass(frozen=True)
class QualityRule:
    """One data-quality rule: a Spark SQL ``predicate`` true for a valid row, and its action."""

    name: str
    predicate: str
    action: str
    max_failure_rate: float | None = None
    description: str = ""


@dataclass(frozen=True)
class SparkSettings:
    """How the one SparkSession is built."""

    master: str
    app_name: str
    conf: Mapping[str, str]
    packages: tuple[str, ...]
    jars_dir: Path | None
    ivy_dir: Path
    log4j_config: Path | None = None


#: A local directory, or a Hadoop URI kept as text (``Path`` would fold ``s3a://`` to ``s3a:/``).
LakeLocation = Path | str


@dataclass(frozen=True)
class TablePaths:
    """Locations of the Delta tables of the lake."""

    curated: LakeLocation
    quarantine: LakeLocation
    dq_metrics: LakeLocation
    kpis: LakeLocation


@dataclass(frozen=True)
class CurateSettings:
    """The rules, in evaluation order, and the IANA zone of the raw wall-clock timestamps."""

    rules: tuple[QualityRule, ...]
    data_time_zone: str = "America/New_York"


@dataclass(frozen=True)
class Settings:
    """All validated settings of one process; the secrets are left out of ``repr``."""

    environment: str
    log_level: str
    data_dir: Path
    lake_dir: LakeLocation
    tables: TablePaths
    spark: SparkSettings
    curate: CurateSettings
    trips: TripLoadSettings
    aggregate: AggregateSettings
    download: DownloadSettings
    zone_lookup: Path | None
    database_url: DatabaseUrl | None = field(default=None, repr=False)
    hash_salt: str = field(default=DEV_HASH_SALT, repr=False)


def default_conf_dir() -> Path:
    """Return the configuration directory: ``$CHILLFLOW_CONF_DIR``, ``./conf`` or the repo's."""
    explicit = os.environ.get("CHILLFLOW_CONF_DIR")
    if explicit:
        return Path(explicit)
    local = Path.cwd() / "conf"
    if (local / "chillflow.toml").is_file():
        return local
    return _PACKAGE_ROOT / "conf"


def parse_month(value: str) -> str:
    """Return ``value`` if it is a ``YYYY-MM`` month of :data:`YEARS`; ConfigError otherwise.

    ASCII digits only, nothing around them; the year bounds keep a month and the one after it
    within what Python's and Spark's dates hold.
    """
    match = _MONTH.fullmatch(value) if isinstance(value, str) else None
    if match is None or int(match[1]) not in YEARS:
        raise ConfigError(
            f"invalid month {value!r}: expected YYYY-MM from {YEARS[0]}-01 to {YEARS[-1]}-12, "
            "e.g. 2025-01"
        )
    return value


def parse_service(value: str, name: str = "service") -> str:
    """Return ``value`` if it is a TLC service; ConfigError naming ``name`` otherwise."""
    if value not in SERVICES:
        raise ConfigError(f"{name} {value!r}: expected one of {', '.join(SERVICES)}")
    return value


def tlc_file_name(service: str, month: str) -> str:
    """Return the TLC file name of a service's month, e.g. ``yellow_tripdata_2025-01.parquet``."""
    return f"{parse_service(service)}_tripdata_{parse_month(month)}.parquet"


def load_settings(conf_dir: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Load ``chillflow.toml`` and ``quality_rules.toml`` and overlay environment variables.

    Raises:
        ConfigError: If a file is missing or malformed or a value is invalid.
    """
    env = os.environ if env is None else env
    conf_dir = conf_dir or default_conf_dir()
    main = read_toml(conf_dir / "chillflow.toml")
    rules_doc = read_toml(conf_dir / "quality_rules.toml")
    for name, keys in _KEYS.items():
        where = f"[{name}]" if name else "chillflow.toml"
        section = main.get(name, {}) if name else main
        check_keys(where, section, keys)
        for key in set(_TEXT_KEYS.get(name, ())) & set(section):
            if not isinstance(section[key], str) or not section[key].strip():
                raise ConfigError(f"{where} {key}={section[key]!r}: expected a string")

    environment = env.get("CHILLFLOW_ENV", str(main.get("environment", "development")))
    log_level = env.get("LOG_LEVEL", str(main.get("log_level", "INFO"))).upper()
    for name, value, allowed in (
        ("CHILLFLOW_ENV", environment, ENVIRONMENTS),
        ("LOG_LEVEL", log_level, LOG_LEVELS),
    ):
        if value not in allowed:
            raise ConfigError(f"{name}={value!r}: expected one of {allowed}")

    paths = main.get("paths", {})
    data_dir = _path(env.get("CHILLFLOW_DATA_DIR") or paths.get("data_dir", ".chillflow"))
    lake_dir = _lake_location(
        env.get("CHILLFLOW_LAKE_DIR") or paths.get("lake_dir") or data_dir / "lake"
    )
    tables_conf = main.get("tables", {})
    tables = TablePaths(
        **{
            name: _in_lake(lake_dir, _relative(tables_conf.get(name, default), f"tables.{name}"))
            for name, default in _TABLES.items()
        }
    )
    zone_lookup = env.get("CHILLFLOW_ZONE_LOOKUP") or paths.get("zone_lookup")

    hash_salt = env.get("HASH_SALT") or DEV_HASH_SALT
    if not hash_salt.strip():
        raise ConfigError("HASH_SALT holds only whitespace: set it to a secret value, or unset it")
    if environment == "production" and hash_salt == DEV_HASH_SALT:
        raise ConfigError(
            "HASH_SALT is unset or the development salt while CHILLFLOW_ENV=production: "
            "set HASH_SALT to a secret value"
        )

    database_url = env.get("DATABASE_URL")
    try:
        database_url = parse_database_url(database_url) if database_url else None
    except ConfigError as exc:
        raise ConfigError(f"DATABASE_URL: {exc}") from None

    return Settings(
        environment=environment,
        log_level=log_level,
        data_dir=data_dir,
        lake_dir=lake_dir,
        tables=tables,
        spark=_spark_settings(main.get("spark", {}), env, conf_dir),
        curate=CurateSettings(
            rules=_quality_rules(rules_doc, conf_dir / "quality_rules.toml"),
            data_time_zone=check_time_zone(
                main.get("curate", {}).get("data_time_zone", CurateSettings.data_time_zone),
                "[curate] data_time_zone",
            ),
        ),
        trips=TripLoadSettings.from_section(main.get("trips", {})),
        aggregate=AggregateSettings.from_section(main.get("aggregate", {})),
        download=DownloadSettings.from_section(main.get("download", {}), env),
        zone_lookup=_path(zone_lookup) if zone_lookup else None,
        database_url=database_url,
        hash_salt=hash_salt,
    )


def _spark_settings(
    conf: Mapping[str, Any], env: Mapping[str, str], conf_dir: Path
) -> SparkSettings:
    spark_conf = check_table("[spark.conf]", conf.get("conf", {}))
    packages = conf.get("packages", [])
    if not isinstance(packages, list) or not all(isinstance(p, str) and p for p in packages):
        raise ConfigError(f"[spark] packages={packages!r}: expected a list of strings")
    if not all(isinstance(v, (str, int, float, bool)) for v in spark_conf.values()):
        raise ConfigError("spark.conf values must be strings, numbers or booleans")
    jars_dir = env.get("CHILLFLOW_JARS_DIR") or conf.get("jars_dir")
    ivy_dir = env.get("CHILLFLOW_IVY_DIR") or conf.get("ivy_dir") or Path.home() / ".ivy2"
    return SparkSettings(
        master=env.get("SPARK_MASTER") or conf.get("master", "local[2]"),
        app_name=conf.get("app_name", "chillflow"),
        conf=MappingProxyType({k: _spark_value(v) for k, v in spark_conf.items()}),
        packages=tuple(packages),
        jars_dir=_path(jars_dir) if jars_dir else None,
        ivy_dir=_path(ivy_dir),
        log4j_config=(conf_dir / "log4j2.properties").resolve(),
    )


def _quality_rules(doc: Mapping[str, Any], source: Path) -> tuple[QualityRule, ...]:
    rules: list[QualityRule] = []
    check_keys(str(source), doc, ("rules",))
    if not isinstance(doc.get("rules", []), list):
        raise ConfigError(f"{source}: rules must be an array of tables ([[rules]] headers)")
    for index, raw in enumerate(doc.get("rules", [])):
        where = f"{source} rule #{index + 1}"
        check_keys(where, raw, _RULE_KEYS)
        name = raw.get("name", "")
        if not isinstance(name, str) or not _RULE_NAME.match(name):
            raise ConfigError(f"{where}: name {name!r} must match {_RULE_NAME.pattern}")
        if name in {rule.name for rule in rules}:
            raise ConfigError(f"{where}: duplicate rule name {name!r}")
        predicate = raw.get("predicate")
        if not isinstance(predicate, str) or not predicate.strip():
            raise ConfigError(f"{where} ({name}): predicate must be a non-empty SQL expression")
        action = raw.get("action", "quarantine")
        if action not in QUALITY_ACTIONS:
            raise ConfigError(f"{where} ({name}): action {action!r} not in {QUALITY_ACTIONS}")
        rate = raw.get("max_failure_rate")
        valid = isinstance(rate, (int, float)) and not isinstance(rate, bool) and 0 <= rate <= 1
        if rate is not None and not valid:
            raise ConfigError(f"{where} ({name}): max_failure_rate must be a fraction 0–1")
        rate = None if rate is None else float(rate)
        description = raw.get("description", "")
        if not isinstance(description, str):
            raise ConfigError(f"{where} ({name}): description {description!r} must be text")
        rules.append(QualityRule(name, predicate.strip(), action, rate, description))
    if not rules:
        raise ConfigError(f"{source}: no [[rules]] defined")
    return tuple(rules)


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file of the conf directory, or raise ConfigError naming it."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(
            f"configuration file {path} not found (set CHILLFLOW_CONF_DIR to the conf/ directory)"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def _path(value: str | Path) -> Path:
    return Path(value).expanduser().resolve()


def _lake_location(value: str | Path) -> LakeLocation:
    """Return a local lake directory as an absolute Path, and a Hadoop URI unchanged."""
    if isinstance(value, str) and _URI.match(value):
        return value.rstrip("/")
    return _path(value)


def _in_lake(lake_dir: LakeLocation, relative: str) -> LakeLocation:
    return f"{lake_dir}/{relative}" if isinstance(lake_dir, str) else lake_dir / relative


def _relative(value: str, key: str) -> str:
    if not isinstance(value, str) or not value or Path(value).is_absolute() or ".." in value:
        raise ConfigError(f"{key}={value!r}: expected a relative path inside the lake")
    return value


def _spark_value(value: str | int | float | bool) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
