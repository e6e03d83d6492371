"""The checks every configuration file shares, and the stage sections of ``chillflow.toml``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from chillflow.errors import ConfigError

SOURCES = ("postgres", "curated")
#: The years a month, day or hour may name: no taxi trips lie outside them, and a month, day or
#: lookback away from any of them is still a date Python and Spark hold.
YEARS = range(1900, 3000)


def check_table(where: str, table: Any) -> Mapping[str, Any]:
    """Return ``table`` if it is a TOML table; ConfigError naming ``where`` otherwise."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: expected a table of settings, not {type(table).__name__}")
    return table


def check_keys(where: str, table: Mapping[str, Any], known: Iterable[str]) -> None:
    """Raise ConfigError if ``table`` is no table or has keys not in ``known`` (a misspelling)."""
    unknown = sorted(set(check_table(where, table)) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; expected {sorted(known)}")


def check_number(what: str, value: Any, *, integer: bool = False, positive: bool = False) -> Any:
    """Return ``value`` if it is a whole number (``integer``) or seconds, > 0 or >= 0.

    Raises:
        ConfigError: Naming ``what`` (where the key is, and the key), the value and the bound.
    """
    valid = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
    if valid and (value > 0 or (value == 0 and not positive)):
        return value if integer else float(value)
    if integer:
        expected = "a positive integer" if positive else "an integer >= 0"
    else:
        expected = "seconds > 0" if positive else "seconds >= 0"
    raise ConfigError(f"{what}={value!r}: expected {expected}")


def check_time_zone(value: Any, what: str) -> str:
    """Return ``value`` if it names an IANA time zone; ConfigError naming ``what`` otherwise."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConfigError(
            f"{what} = {value!r}: expected an IANA time zone such as 'America/New_York'"
        ) from None
    return value


def section_values(
    name: str, section: Mapping[str, Any], defaults: Any, positive: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Merge ``section`` over the dataclass instance ``defaults``, each value of its default's kind.

    Raises:
        ConfigError: A key is unknown (a misspelling would silently fall back to the default), or
            a value is not true/false, a positive integer or seconds >= 0 (> 0 in ``positive``)
            like its default.
    """
    check_keys(f"[{name}]", section, defaults.__dataclass_fields__)
    values = {**defaults.__dict__, **section}
    for key, value in section.items():
        kind = type(getattr(defaults, key))
        if kind is bool and not isinstance(value, bool):
            raise ConfigError(f"[{name}] {key}: expected true or false")
        if kind in (int, float):
            strict = kind is int or key in positive
            values[key] = check_number(
                f"[{name}] {key}", value, integer=kind is int, positive=strict
            )
    return values


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
