"""Cloud credentials that never reach a log line, a ``repr`` or a record.

Credentials come from a mapping (what Kedro passes from ``conf/local/credentials.yml``) or, when
none is given, from the SDK's own default chain (environment variables, profiles, managed
identity), which this code never reads. Values are kept inside ``Credentials`` and handed to the
SDK only when a client is built; ``repr`` shows the key names alone.

SDK loggers log requests at DEBUG, and botocore's include the ``Authorization`` header, whose
``Credential=`` names the access key id. Filters on a logger do not see records of its child
loggers, so ``redacting_logs`` puts a ``RedactingFilter`` on every handler (the root logger's,
where records of every logger end up, and any on a named logger) for the duration of the cloud
calls: a value an SDK, or a careless message, would write is replaced by ``***`` before any
handler emits it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

from green_deploy.errors import ConfigError

MASK = "***"
# Shorter values (a region, "true") would mask ordinary words; no real secret is that short.
_MIN_SECRET_LENGTH = 6


class Credentials:
    """Named credential values; ``repr``/``str`` show names only.

    Args:
        values: key -> value, e.g. ``{"aws_access_key_id": ..., "aws_secret_access_key": ...}``.
        allowed: the keys this target reads; any other key is a ``ConfigError`` (a misspelt key
            would otherwise silently fall back to the default chain).
        where: names the entry in error messages (``credentials 'aws'``).
    """

    def __init__(self, values: Mapping[str, str], allowed: Iterable[str], where: str) -> None:
        if not isinstance(values, Mapping):
            raise ConfigError(f"{where}: credentials must be a mapping, got {type(values).__name__}")
        allowed = tuple(allowed)
        unknown = sorted(set(values) - set(allowed))
        if unknown:
            raise ConfigError(f"{where}: unknown credential key(s) {unknown}; known: {sorted(allowed)}")
        not_text = sorted(key for key, value in values.items() if not isinstance(value, str))
        if not_text:
            raise ConfigError(f"{where}: credential value(s) of {not_text} must be strings")
        self._values = {key: value for key, value in values.items() if value}
        self.where = where

    def get(self, key: str) -> str | None:
        return self._values.get(key)

    def keys(self) -> tuple[str, ...]:
        return tuple(sorted(self._values))

    def as_kwargs(self) -> dict[str, str]:
        """The values, for an SDK constructor only; never log or store the result."""
        return dict(self._values)

    def secret_values(self) -> tuple[str, ...]:
        """Every value to mask in logs: secrets and identifiers (a tenant or client id) alike."""
        return tuple(value for value in self._values.values() if len(value) >= _MIN_SECRET_LENGTH)

    def __bool__(self) -> bool:
        return bool(self._values)

    def __repr__(self) -> str:
        return f"Credentials({', '.join(f'{key}={MASK}' for key in self.keys())})"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("Credentials are not picklable: they would leave the process unmasked")


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret replaced by ``***``, longest first."""
    for secret in sorted({s for s in secrets if s and len(s) >= _MIN_SECRET_LENGTH}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


class RedactingFilter(logging.Filter):
    """Masks ``secrets`` in a record's message (and its formatted traceback) before it is emitted."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s and len(s) >= _MIN_SECRET_LENGTH)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        masked = redact(message, self.secrets)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            if redact(text, self.secrets) != text:
                record.exc_text = redact(text, self.secrets)
                record.exc_info = None
        return True


@contextmanager
def redacting_logs(secrets: Iterable[str]) -> Iterator[None]:
    """Mask ``secrets`` in every record the root logger's handlers emit inside the block."""
    log_filter = RedactingFilter(secrets)
    if not log_filter.secrets:
        yield
        return
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    # every handler once, the root's and those a tool put on a named logger (boto3.set_stream_logger)
    handlers = list(
        {id(h): h for lg in loggers if isinstance(lg, logging.Logger) for h in lg.handlers}.values()
    )
    for handler in handlers:
        handler.addFilter(log_filter)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(log_filter)
