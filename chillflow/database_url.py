"""PostgreSQL connection URLs, parsed once into a value whose text never shows the password."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from chillflow.errors import ConfigError

JDBC_DRIVER = "org.postgresql.Driver"
_SCHEMES = ("postgresql", "postgres")
# Query keys that would contradict the URL's own host, port, database or credentials.
_RESERVED_PARAMS = frozenset({"host", "hostaddr", "port", "dbname", "user", "password"})
# libpq parameters with a pgJDBC counterpart; others are not forwarded to JDBC.
_JDBC_NAMES = {
    "sslmode": "sslmode",
    "application_name": "ApplicationName",
    "connect_timeout": "connectTimeout",
    "options": "options",
}
_PASSWORD_SETTING = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]*)", re.IGNORECASE)


@dataclass(frozen=True)
class DatabaseUrl:
    """A parsed ``postgresql://`` URL; ``str()`` and ``repr()`` never show the password."""

    host: str
    port: int
    dbname: str
    user: str
    password: str | None = field(default=None, repr=False)
    params: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        return mask_url(self.url())

    def url(self) -> str:
        """The URL again, credentials percent-encoded; it contains the password."""
        credentials = quote(self.user, safe="")
        if self.password is not None:
            credentials += ":" + quote(self.password, safe="")
        query = f"?{urlencode(self.params)}" if self.params else ""
        return f"postgresql://{credentials}@{self._netloc()}/{quote(self.dbname, safe='')}{query}"

    def jdbc_url(self) -> str:
        """``jdbc:postgresql://host:port/dbname``; the credentials are in jdbc_properties()."""
        return f"jdbc:postgresql://{self._netloc()}/{quote(self.dbname, safe='')}"

    def jdbc_properties(self) -> dict[str, str]:
        """Spark JDBC properties: user, password, driver and the parameters pgJDBC knows."""
        properties = {"user": self.user, "driver": JDBC_DRIVER}
        if self.password is not None:
            properties["password"] = self.password
        properties.update((_JDBC_NAMES[k], v) for k, v in self.params if k in _JDBC_NAMES)
        return properties

    def dsn_kwargs(self) -> dict[str, str | int]:
        """Keyword arguments for ``psycopg2.connect``."""
        kwargs: dict[str, str | int] = {"host": self.host, "port": self.port}
        kwargs |= {"dbname": self.dbname, "user": self.user}
        if self.password is not None:
            kwargs["password"] = self.password
        return kwargs | dict(self.params)

    def server(self) -> str:
        """``host:port/dbname``, for messages."""
        return f"{self._netloc()}/{self.dbname}"

    def _netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def mask_url(url: str) -> str:
    """Return ``url`` (or a key=value DSN) with any password replaced by ``***``.

    Handles ``user:password@`` even with unencoded ``@``, ``/`` or ``?`` in the password, and
    ``password=`` settings; when in doubt it masks too much.
    """
    scheme, separator, rest = url.partition("://")
    at = rest.rfind("@")
    if separator and at >= 0:
        user, colon, password = rest[:at].partition(":")
        if colon and password:
            url = f"{scheme}://{user}:***@{rest[at + 1 :]}"
    return _PASSWORD_SETTING.sub(r"\1***", url)


def parse_database_url(url: str) -> DatabaseUrl:
    """Parse a ``postgresql://`` or ``postgres://`` URL with user, host and database.

    Special characters in the user or password must be percent-encoded.

    Raises:
        ConfigError: The URL is malformed or incomplete; the message shows it masked.
    """
    problem = _url_problem(url)
    if problem is not None:
        raise ConfigError(f"invalid database URL {mask_url(url)}: {problem}")
    parts = urlsplit(url)
    return DatabaseUrl(
        host=parts.hostname or "",
        port=parts.port or 5432,
        dbname=unquote(parts.path[1:]),
        user=unquote(parts.username or ""),
        password=None if parts.password is None else unquote(parts.password),
        params=tuple(parse_qsl(parts.query, keep_blank_values=True)),
    )


def _url_problem(url: str) -> str | None:
    """What makes ``url`` unusable, without quoting any of it; None when it is fine."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # its message quotes the offending text, which may be the password
        return (
            "the port is not a number between 0 and 65535, or the host is malformed "
            "(percent-encode @ : / ? # in the password)"
        )
    reserved = _RESERVED_PARAMS & {k for k, _ in parse_qsl(parts.query, keep_blank_values=True)}
    problems = (
        (parts.scheme not in _SCHEMES, "it must start with postgresql:// or postgres://"),
        (not parts.hostname, "it names no host (Unix-socket URLs do not work: JDBC needs TCP)"),
        ("," in parts.netloc.rpartition("@")[2], "multiple hosts are not supported"),
        (port == 0, "port 0 is not a usable port"),
        (not parts.username, "it names no user"),
        (not parts.path[1:], "it names no database (add /dbname after the host)"),
        (reserved, f"give {', '.join(sorted(reserved))} in the URL itself, not as parameters"),
    )
    return next((message for failed, message in problems if failed), None)
