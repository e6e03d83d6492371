"""One-line summaries of errors whose message carries a Java stack trace."""

from __future__ import annotations

from chillflow.errors import error_summary


def test_a_py4j_message_is_summarised_to_the_java_exception_line():
    message = (
        "An error occurred while calling o693.save.\n"
        ": org.apache.spark.sql.delta.DeltaIOException: [DELTA_CANNOT_CREATE_LOG_PATH] "
        "Cannot create file:/lake/q/_delta_log\n"
        "\tat org.apache.spark.sql.delta.DeltaErrorsBase.cannotCreateLogPathException(...)\n"
    )

    assert error_summary(RuntimeError(message)) == (
        "org.apache.spark.sql.delta.DeltaIOException: [DELTA_CANNOT_CREATE_LOG_PATH] "
        "Cannot create file:/lake/q/_delta_log"
    )


def test_a_plain_message_keeps_its_first_line_and_an_empty_one_the_type_name():
    assert error_summary(ValueError("bad value\nmore detail")) == "bad value"
    assert error_summary(KeyError()) == "KeyError"


def test_a_long_line_is_cut_at_500_characters():
    assert len(error_summary(RuntimeError("x" * 2000))) == 500
