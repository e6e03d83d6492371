"""The stage sections of ``conf/chillflow.toml`` ([trips], [aggregate], [download]), validated."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from chillflow.errors import ConfigError

SOURCES = ("postgres", "curated")


def check_keys(name: str, section: Mapping[str, Any], known: Iterable[str]) -> None:
    """Raise ConfigError naming the keys of ``section`` not in ``known`` (a misspelling)."""
    unknown = sorted(set(section) - set(known))
    if unknown:
        where = f"[{name}]" if name else "chillflow.toml"
        raise ConfigError(f"{where}: unknown keys {unknown}; expected {sorted(known)}")


def section_values(
    name: str, section: Mapping[str, Any], defaults: Any, positive: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Merge ``section`` over the dataclass instance ``defaults``, each value of its default's kind.

    Raises:
        ConfigError: A key is unknown (a misspelling would silently fall back to the default), or
            a value is not true/false, a positive integer or seconds >= 0 (> 0 in ``positive``)
            like its default.
    """
    check_keys(name, section, defaults.__dataclass_fields__)
    for key, value in section.items():
        kind, number = type(getattr(defaults, key)), type(value) in (int, float)
        if kind is bool and not isinstance(value, bool):
            raise ConfigError(f"[{name}] {key}: expected true or false")
        if kind is int and (type(value) is not int or value < 1):
            raise ConfigError(f"[{name}] {key}={value!r}: expected a positive integer")
        if kind is float and not (number and (value > 0 or value == 0 and key not in positive)):
            bound = "> 0" if key in positive else ">= 0"
            raise ConfigError(f"[{name}] {key}={value!r}: expected seconds {bound}")
    return {**defaults.__dict__, **section}


@dataclass(frozen=True)
class TripLoadSettings:
    """The ``[trips]`` section of ``conf/chillflow.toml`` (explained there)."""

    jdbc_partitions: int = 4
    batch_size: int = 10_000
    rewrite_batched_inserts: bool = True
    work_mem: str = "256MB"
    progress_every_sec: float = 5.0

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> TripLoadSettings:
        """Validate the section; ConfigError for a wrong value or an unknown key."""
        values = section_values("trips", section, cls(), ("progress_every_sec",))
        work_mem = values["work_mem"]
        if not isinstance(work_mem, str) or not work_mem[:1].isdigit() or not work_mem.isalnum():
            raise ConfigError(f"[trips] work_mem={work_mem!r}: expected a size such as '256MB'")
        return cls(**values)


@dataclass(frozen=True)
class AggregateSettings:
    """The ``[aggregate]`` section of ``conf/chillflow.toml``."""

    default_lookback_hours: int = 24
    default_source: str = "postgres"
    jdbc_partitions: int = 4
    jdbc_fetch_size: int = 10_000

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> AggregateSettings:
        """Validate the section; ConfigError for a wrong value or an unknown key."""
        values = section_values("aggregate", section, cls())
        check_source(values["default_source"], "[aggregate] default_source")
        return cls(**values)


def check_source(source: str, what: str = "--source") -> str:
    """Return ``source`` if it names a trips source; ConfigError otherwise."""
    if source not in SOURCES:
        raise ConfigError(f"{what}={source!r}: expected one of {', '.join(SOURCES)}")
    return source


@dataclass(frozen=True)
class DownloadSettings:
    """The ``[download]`` section (explained in ``conf/chillflow.toml``)."""

    base_url: str = "https://d37ci6vzurychx.cloudfront.net/trip-data"
    attempts: int = 4
    backoff_sec: float = 2.0
    timeout_sec: float = 60.0
    progress_every_sec: float = 5.0
    before_monthly: bool = False

    @classmethod
    def from_section(cls, section: Mapping[str, Any], env: Mapping[str, str]) -> DownloadSettings:
        """Validate the section; ``CHILLFLOW_TLC_BASE_URL`` in ``env`` overrides ``base_url``."""
        values = section_values("download", section, cls())
        base_url = str(env.get("CHILLFLOW_TLC_BASE_URL") or values["base_url"]).rstrip("/")
        if "@" in base_url.partition("//")[2].partition("/")[0]:
            raise ConfigError("download base_url: credentials would show in logs (value not shown)")
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"download base_url={base_url!r}: expected an http(s):// address")
        return cls(**{**values, "base_url": base_url})
