"""Credentials never leave the process: the one helper that hides them wherever a source, a URL or a
storage option is shown or written (manifests, summaries, logs, artifact links, error messages).

What is hidden (each replaced by :data:`MASK`):

- the whole user-info part of a URL (``http://alice:pw@host/x`` -> ``http://***@host/x``; a user
  name alone is hidden too, since tokens are often passed as one);
- the value of every query parameter whose name is secret (:func:`is_secret_name`), such as
  ``X-Amz-Signature``, ``X-Amz-Credential``, ``X-Amz-Security-Token`` (S3 presigned URLs),
  ``X-Goog-Signature``, ``sig`` (Azure SAS), ``token``, ``access_token``, ``key``, ``api_key``,
  ``password``;
- in storage options, the value of every key whose name is secret (``key``, ``secret``,
  ``token``, ``password``, ``aws_secret_access_key``, ``account_key``, ``connection_string``,
  ``Authorization``...) and every URL held in another value (``endpoint_url`` with user-info),
  nested mappings (``client_kwargs``, ``headers``) included.

Only what is shown is redacted: the real URL and options are still the ones used for reading.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlsplit, urlunsplit

#: What replaces a secret.
MASK = "***"
#: Name parts (lower case, letters and digits only) that make a query parameter or option secret.
SECRET_WORDS = ("signature", "credential", "token", "secret", "password", "passwd", "accesskey", "connectionstring",
                "authorization", "cookie")
#: Whole names (lower case, letters and digits only) that are secret.
SECRET_NAMES = frozenset({"sig", "key", "pwd", "pass", "auth", "apikey", "code"})
#: A URL inside free text: a scheme, ``://``, then anything up to white space or a quote, less
#: the punctuation that ends it in a sentence (``URL: reason``, ``(URL)``, ``URL.``).
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]*[^\s'\"<>`:;,.!?)\]}]")


def is_secret_name(name: str) -> bool:
    """True for a query-parameter or option name that carries a credential: its letters and digits,
    lower-cased, contain a word of :data:`SECRET_WORDS`, end with ``key`` or are one of
    :data:`SECRET_NAMES`."""
    plain = re.sub(r"[^a-z0-9]", "", name.lower())
    return plain in SECRET_NAMES or plain.endswith("key") or any(word in plain for word in SECRET_WORDS)


def redact(text: str) -> str:
    """``text`` with the credentials of every URL in it hidden (user-info, secret query values).

    A bare URL is text holding one URL; text without a URL comes back unchanged.
    """
    return _URL.sub(lambda m: _redact_url(m.group(0)), str(text))


def _redact_url(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an invalid IPv6 host: hide everything after the scheme
        return url.split("://", 1)[0] + "://" + MASK
    netloc = parts.netloc
    if "@" in netloc:
        netloc = MASK + "@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query and any(is_secret_name(k) for k, _ in parse_qsl(query, keep_blank_values=True)):
        query = "&".join(_redact_pair(pair) for pair in query.split("&"))
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _redact_pair(pair: str) -> str:
    name, sep, _ = pair.partition("=")
    return f"{name}={MASK}" if sep and is_secret_name(unquote_plus(name)) else pair


def redact_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of fsspec ``options`` safe to show: secret keys' values hidden, URLs redacted,
    nested mappings and lists handled the same way."""
    return {str(k): MASK if is_secret_name(str(k)) else _redact_value(v) for k, v in (options or {}).items()}


def _redact_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return redact_options(value)
    if isinstance(value, (list, tuple)):
        return [_redact_value(v) for v in value]
    return redact(value) if isinstance(value, str) else value


__all__ = ["MASK", "SECRET_WORDS", "SECRET_NAMES", "is_secret_name", "redact", "redact_options"]
