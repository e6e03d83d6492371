"""Fetching the TLC's monthly trip files over HTTP into the landing directory."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import structlog

from chillflow.errors import (
    BusyError,
    ConfigError,
    DependencyError,
    NotPublishedError,
    SchemaError,
)
from chillflow.schemas import trip_service
from chillflow.sections import DownloadSettings
from chillflow.settings import tlc_file_name


def landing_dir(data_dir: Path, env: Mapping[str, str] | None = None) -> Path:
    """Return ``$CHILLFLOW_LANDING_DIR``, else ``<data_dir>/landing``."""
    explicit = (os.environ if env is None else env).get("CHILLFLOW_LANDING_DIR")
    return Path(explicit).expanduser().resolve() if explicit else data_dir / "landing"


class _RetryableError(Exception):
    """A failure another try may not meet: a 5xx answer or a body shorter than announced."""


def download_month(
    service: str, month: str, landing: Path, conf: DownloadSettings, *, bar: bool = False
) -> dict[str, Any]:
    """Fetch ``{service}_tripdata_{month}.parquet`` into ``landing`` unless it is there already.

    The body streams into ``NAME.part`` (resumed while the ETag is unchanged) and is renamed
    into place once its size and footer are right; a landed file with the server's size and ETag
    is skipped. Returns service, month, path, status, bytes, seconds and etag.

    Raises:
        NotPublishedError: HTTP 403 or 404 (the TLC's CloudFront answers 403 for a missing file).
        DependencyError: The server failed ``conf.attempts`` times, or refused the request.
        SchemaError: The body is not a Parquet file of the service's layout; nothing is kept.
        BusyError: Another process is downloading the same file.
    """
    name = tlc_file_name(service, month)
    url = f"{conf.base_url}/{name}"
    target = landing / name
    partial = landing / f"{name}.part"
    log = structlog.get_logger("chillflow.download").bind(service=service, month=month)
    started = time.monotonic()
    try:
        landing.mkdir(parents=True, exist_ok=True)
        handle = partial.open("ab", buffering=0)
    except OSError as exc:
        raise ConfigError(
            f"cannot write into the landing directory {landing} ({exc.strerror}); expected a "
            "directory (--to names the directory, not the file)"
        ) from None
    # identity: a compressed body would not match the file's size nor be Parquet.
    client = httpx.Client(
        timeout=conf.timeout_sec, follow_redirects=True, headers={"Accept-Encoding": "identity"}
    )
    with client, handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BusyError(f"{partial} is being downloaded by another process") from None
        try:
            for attempt in range(1, conf.attempts + 1):
                try:
                    status, etag = _fetch(client, url, target, handle, conf, log, bar)
                    break
                except (httpx.TransportError, _RetryableError) as exc:
                    reason = str(exc) or type(exc).__name__
                    if attempt == conf.attempts:
                        raise DependencyError(
                            f"{service} {month}: {url} failed {attempt} times, last: {reason}"
                        ) from None
                    wait_sec = conf.backoff_sec * 2 ** (attempt - 1)
                    log.warning("download.retry", attempt=attempt, wait_sec=wait_sec, error=reason)
                    time.sleep(wait_sec)
            if status != "skipped":
                _check_layout(partial, service, url)
                os.fsync(handle.fileno())
                os.replace(partial, target)
                os.replace(_etag_file(partial), _etag_file(target))
        finally:
            if not partial.exists() or partial.stat().st_size == 0:
                partial.unlink(missing_ok=True)
                _etag_file(partial).unlink(missing_ok=True)
    result = {"service": service, "month": month, "path": str(target), "status": status}
    seconds = round(time.monotonic() - started, 2)
    result |= {"bytes": target.stat().st_size, "seconds": seconds, "etag": etag}
    log.info("download.finished", **result)
    return result


def _fetch(
    client: httpx.Client, url: str, target: Path, handle: BinaryIO, conf: Any, log: Any, bar: bool
) -> tuple[str, str | None]:
    """Fill ``handle`` (the partial file) with the body; return the status and ETag."""
    head = _checked(client.head(url), url)
    size = int(head.headers["content-length"]) if "content-length" in head.headers else None
    etag = head.headers.get("etag")
    if target.is_file() and target.stat().st_size == size and _read_etag(target) in (None, etag):
        handle.truncate(0)
        return "skipped", etag
    partial = Path(handle.name)
    done = os.fstat(handle.fileno()).st_size
    if not (etag and _read_etag(partial) == etag and (size is None or done <= size)):
        handle.truncate(0)
        done = 0
    _etag_file(partial).write_text(etag or "")
    if done and done == size:
        return "resumed", etag
    headers = {"Range": f"bytes={done}-", "If-Range": etag} if done else {}
    with client.stream("GET", url, headers=headers) as response:
        _checked(response, url)
        if response.status_code != 206:  # no Range support, or the file changed: start over
            handle.truncate(0)
            done = 0
        log.info("download.started", url=url, bytes_total=size, resume_from=done)
        started = last = time.monotonic()
        with _bar(target.name, done, size) if bar else nullcontext() as advance:
            for chunk in response.iter_bytes():
                handle.write(chunk)
                if advance:
                    advance(len(chunk))
                elif time.monotonic() - last >= conf.progress_every_sec:
                    last, now_bytes = time.monotonic(), handle.tell()
                    mb_per_sec = round((now_bytes - done) / (last - started + 1e-9) / 1e6, 2)
                    log.info("download.progress", bytes_done=now_bytes, bytes_total=size,
                             mb_per_sec=mb_per_sec)  # fmt: skip
    got = os.fstat(handle.fileno()).st_size
    if size is not None and got != size:
        raise _RetryableError(f"got {got} bytes of a {size}-byte file")
    return ("resumed" if response.status_code == 206 else "downloaded"), etag


def _checked(response: httpx.Response, url: str) -> httpx.Response:
    code = response.status_code
    if code in (403, 404):
        service, _, month = Path(url).stem.partition("_tripdata_")
        raise NotPublishedError(f"{service} {month} is not published at {url} (HTTP {code})")
    if code >= 500 or code in (408, 429):
        raise _RetryableError(f"HTTP {code}")
    if code >= 400:
        raise DependencyError(f"{url}: the server refused the request (HTTP {code})")
    return response


def _check_layout(partial: Path, service: str, url: str) -> None:
    """Refuse (and delete) a body that is not a Parquet file of the service's layout."""
    try:
        found = trip_service(pq.ParquetFile(partial).schema_arrow.names, url)
        if found != service:
            raise SchemaError(f"{url}: holds {found} trips, expected {service}")
    except (pa.ArrowException, OSError, SchemaError) as exc:
        partial.unlink()
        _etag_file(partial).unlink(missing_ok=True)
        if isinstance(exc, SchemaError):
            raise
        raise SchemaError(f"{url}: not a readable Parquet file ({exc})") from None


@contextmanager
def _bar(label: str, done: int, total: int | None) -> Iterator[Callable[[int], None]]:
    from rich import progress as rp

    columns = (rp.TextColumn(label), rp.BarColumn(), rp.DownloadColumn())
    columns += (rp.TransferSpeedColumn(), rp.TimeRemainingColumn())
    with rp.Progress(*columns, console=rp.Console(stderr=True), transient=True) as shown:
        task = shown.add_task(label, total=total, completed=done)
        yield lambda n: shown.advance(task, n)


def _etag_file(path: Path) -> Path:
    return path.with_name(f".{path.name}.etag")


def _read_etag(path: Path) -> str | None:
    stored = _etag_file(path)
    return (stored.read_text() or None) if stored.is_file() else None
