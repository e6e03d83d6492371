from pathlib import Path

import pytest

from chillflow.errors import ConfigError
from chillflow.settings import (
    DEV_HASH_SALT,
    ENVIRONMENTS,
    load_settings,
    parse_month,
    tlc_file_name,
)

CONF = Path(__file__).resolve().parents[2] / "conf"


def write_conf(tmp_path, rules):
    (tmp_path / "chillflow.toml").write_text((CONF / "chillflow.toml").read_text())
    (tmp_path / "quality_rules.toml").write_text(rules)
    return tmp_path


def test_defaults_load_and_hide_secrets(tmp_path):
    settings = load_settings(
        CONF, {"CHILLFLOW_DATA_DIR": str(tmp_path), "DATABASE_URL": "postgresql://u:pw@h/db"}
    )

    assert settings.hash_salt == DEV_HASH_SALT
    assert settings.tables.curated == tmp_path / "lake/curated/trips"
    assert settings.spark.conf["spark.sql.session.timeZone"] == "UTC"
    assert [r.name for r in settings.curate.rules][:5] == [
        "raw_values_parsed",
        "numbers_finite",
        "amounts_plausible",
        "trip_distance_plausible",
        "pickup_before_dropoff",
    ]
    assert settings.curate.data_time_zone == "America/New_York"
    assert "pw" not in repr(settings)
    assert DEV_HASH_SALT not in repr(settings)


def test_production_requires_a_real_salt():
    with pytest.raises(ConfigError, match="HASH_SALT"):
        load_settings(CONF, {"CHILLFLOW_ENV": "production"})
    assert load_settings(CONF, {"CHILLFLOW_ENV": "production", "HASH_SALT": "s3"}).hash_salt
    assert load_settings(CONF, {"HASH_SALT": "x" * 100_000}).hash_salt == "x" * 100_000


@pytest.mark.parametrize("environment", ENVIRONMENTS)
@pytest.mark.parametrize("salt", [" ", "\t\n", "\u00a0"])
def test_a_blank_salt_is_refused(environment, salt):
    with pytest.raises(ConfigError, match="HASH_SALT holds only whitespace"):
        load_settings(CONF, {"CHILLFLOW_ENV": environment, "HASH_SALT": salt})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LOG_LEVEL": "chatty"}, "LOG_LEVEL='CHATTY'"),
        ({"CHILLFLOW_ENV": "staging"}, "CHILLFLOW_ENV='staging'"),
        (
            {"DATABASE_URL": "mysql://u:secret@h/db"},
            r"DATABASE_URL: .*must start with postgresql://",
        ),
    ],
)
def test_invalid_environment_values(env, message):
    with pytest.raises(ConfigError, match=message) as raised:
        load_settings(CONF, env)
    assert "secret" not in str(raised.value)


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ('[[rules]]\nname = "Bad Name"\npredicate = "x"\n', "must match"),
        ('[[rules]]\nname = "a"\npredicate = ""\n', "non-empty SQL"),
        ('[[rules]]\nname = "a"\npredicate = "x"\naction = "drop"\n', "action 'drop'"),
        ('[[rules]]\nname = "a"\npredicate = "x"\nmax_failure_rate = 5\n', "fraction"),
        (
            '[[rules]]\nname = "a"\npredicate = "x"\n[[rules]]\nname = "a"\npredicate = "y"\n',
            "duplicate",
        ),
        ("", "no \\[\\[rules\\]\\]"),
        ("rules = [", "invalid TOML"),
    ],
)
def test_invalid_rules(tmp_path, rules, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(write_conf(tmp_path, rules), {})


def test_missing_conf_dir_says_how_to_fix(tmp_path):
    with pytest.raises(ConfigError, match="CHILLFLOW_CONF_DIR"):
        load_settings(tmp_path, {})


@pytest.mark.parametrize(
    "value",
    # Year 0 and the last month of 9999 are beyond later stages' date arithmetic; a trailing
    # newline or non-ASCII digits would name a month partition of their own.
    ["2025-1", "2025-13", "25-01", "2025-01-01", "", "0000-01", "9999-12", "1899-12", "2025-01\n",
     "\uff12\uff10\uff12\uff15-01"],
)  # fmt: skip
def test_parse_month_rejects(value):
    with pytest.raises(ConfigError, match="expected YYYY-MM from 1900-01 to 2999-12"):
        parse_month(value)


@pytest.mark.parametrize("value", ["1900-01", "2009-01", "2999-12"])
def test_parse_month_accepts(value):
    assert parse_month(value) == value


def test_tlc_file_name():
    assert tlc_file_name("yellow", "2025-01") == "yellow_tripdata_2025-01.parquet"
    assert tlc_file_name("green", "2021-01") == "green_tripdata_2021-01.parquet"


def test_tlc_file_name_rejects_unknown_service():
    with pytest.raises(ConfigError, match="service 'taxi': expected one of yellow, green"):
        tlc_file_name("taxi", "2025-01")


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "", "../../etc/passwd", 5])
def test_an_unknown_data_time_zone_is_refused(tmp_path, zone):
    conf = write_conf(tmp_path, (CONF / "quality_rules.toml").read_text())
    main = (conf / "chillflow.toml").read_text()
    zone_line = (
        f"data_time_zone = {zone!r}" if isinstance(zone, str) else f"data_time_zone = {zone}"
    )
    (conf / "chillflow.toml").write_text(
        main.replace('data_time_zone = "America/New_York"', zone_line)
    )

    with pytest.raises(ConfigError, match=r"\[curate\] data_time_zone = .*expected an IANA"):
        load_settings(conf, {})


@pytest.mark.parametrize(
    ("section", "key", "message"),
    [
        (None, "log_levle", r"chillflow.toml: unknown keys \['log_levle'\]"),
        ("spark", "mastr", r"\[spark\]: unknown keys \['mastr'\]"),
        ("paths", "datadir", r"\[paths\]: unknown keys \['datadir'\]"),
        ("curate", "time_zone", r"\[curate\]: unknown keys \['time_zone'\]"),
        ("trips", "writers", r"\[trips\]: unknown keys \['writers'\]"),
    ],
)
def test_a_misspelt_key_anywhere_is_an_error(tmp_path, section, key, message):
    conf = write_conf(tmp_path, (CONF / "quality_rules.toml").read_text())
    text = (conf / "chillflow.toml").read_text()
    line = f'{key} = "x"\n'
    if section is None:
        text = line + text
    else:
        text = text.replace(f"[{section}]\n", f"[{section}]\n{line}")
    (conf / "chillflow.toml").write_text(text)

    with pytest.raises(ConfigError, match=message):
        load_settings(conf, {})


def test_stage_sections_are_parsed_once_into_settings():
    settings = load_settings(CONF, {})

    assert settings.trips.jdbc_partitions == 4
    assert (settings.aggregate.default_source, settings.aggregate.jdbc_fetch_size) == (
        "postgres",
        10_000,
    )
    assert settings.download.attempts == 4


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[paths]\ndata_dir = 5", r"\[paths\] data_dir=5: expected a string"),
        ("[paths]\nlake_dir = []", r"\[paths\] lake_dir=\[\]: expected a string"),
        ("[paths]\nzone_lookup = 1", r"\[paths\] zone_lookup=1: expected a string"),
        ("[spark]\nmaster = 2", r"\[spark\] master=2: expected a string"),
        ('[spark]\napp_name = ""', r"\[spark\] app_name='': expected a string"),
        ("[spark]\njars_dir = 3", r"\[spark\] jars_dir=3: expected a string"),
        ("[spark]\nivy_dir = [3]", r"\[spark\] ivy_dir=\[3\]: expected a string"),
        ('[spark]\npackages = "io.delta:delta-spark_4.2_2.13:4.4.0"',
         r"\[spark\] packages='io.delta.*: expected a list of strings"),
        ("[spark]\npackages = [1, 2]", r"\[spark\] packages=\[1, 2\]: expected a list of strings"),
        ("[spark]\nconf = 1", r"\[spark.conf\]: expected a table of settings, not int"),
        ('curate = "UTC"', r"\[curate\]: expected a table of settings, not str"),
        ("trips = []", r"\[trips\]: expected a table of settings, not list"),
        ("paths = 1", r"\[paths\]: expected a table of settings, not int"),
    ],
)  # fmt: skip
def test_settings_of_the_wrong_type_are_config_errors(tmp_path, toml, message):
    conf = write_conf(tmp_path, (CONF / "quality_rules.toml").read_text())
    (conf / "chillflow.toml").write_text(toml + "\n")

    with pytest.raises(ConfigError, match=message):
        load_settings(conf, {})


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ('[rules]\nname = "a"\npredicate = "x"\n', r"rules must be an array of tables"),
        ("rules = [1, 2]\n", r"rule #1: expected a table of settings, not int"),
        ('rules = "x"\n', r"rules must be an array of tables"),
        ('[[rules]]\nname = 5\npredicate = "x"\n', r"rule #1: name 5 must match"),
        ('[[rules]]\nname = "a"\npredicate = "x"\nmax_failure_rat = 0.1\n',
         r"rule #1: unknown keys \['max_failure_rat'\]"),
        ('[[rules]]\nname = "a"\npredicate = "x"\nmax_failure_rate = true\n', "fraction"),
        ('[[rules]]\nname = "a"\npredicate = "x"\ndescription = 5\n', r"\(a\): description 5"),
        ('version = 2\n[[rules]]\nname = "a"\npredicate = "x"\n', r"unknown keys \['version'\]"),
    ],
)  # fmt: skip
def test_rules_of_the_wrong_shape_are_config_errors(tmp_path, rules, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(write_conf(tmp_path, rules), {})
