"""The one redaction of URLs: what every ``repr``, log line, error and CLI output shows of a URL.

``user:password@`` becomes ``***@`` and each query value ``***`` (it can hold a listen key or a
signature: ``?listenKey=***``), except the harmless ``timeUnit``; the scheme, host, port, path and
the query's names stay, so a reader still knows where it went.
:func:`redact_url` never raises, whatever it is given (a log call must not fail), and
:func:`redact_text` removes the credentials of given URLs from any text (an exception message of
a library that quoted the URL). Pure: no I/O. ``wsmanager.config.redact_url`` is this function.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

__all__ = [
    "API_KEY",
    "SECRET",
    "SECRET_URL",
    "redact_key",
    "redact_text",
    "redact_url",
    "redacted_repr",
]

_AUTHORITY_ENDS = "/?#"
_SHOWN_PARAMETERS = frozenset({"timeUnit"})  # values that tell, and never hold a secret
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,31}")
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_]{1,32}")


def redact_url(url: object) -> str:
    """``url`` without credentials or query values, for logs, ``repr``, errors and metrics:
    ``redis://user:s3cret@host:6379/0?x=1`` -> ``redis://***@host:6379/0?x=***``."""
    if url is None:
        return "None"
    if isinstance(url, bytes):
        url = url.decode("utf-8", "replace")
    if not isinstance(url, str):
        return f"<{type(url).__name__}>"
    try:
        scheme, sep, rest = url.partition("://")
        if not sep:
            scheme, rest = "", url
        ends = [i for i in (rest.find(c) for c in _AUTHORITY_ENDS) if i >= 0]
        end = min(ends, default=len(rest))
        authority, tail = rest[:end], rest[end:]
        if "@" in authority:
            authority = "***@" + authority.rsplit("@", 1)[1]
        elif "@" in tail.split("?", 1)[0].split("#", 1)[0] and _looks_like_userinfo(authority):
            # an unencoded '/' in the password: "redis://user:pa/ss@host" -> keep the host only
            authority, tail = "***@" + tail.rsplit("@", 1)[1], ""
        path, question, query = tail.split("#", 1)[0].partition("?")
        shown = "?" + _redact_query(query) if question else ""
        return f"{scheme}{sep}{authority}{path}{shown}"
    except Exception:  # never: but a log call must not fail on a URL
        return "<a URL>"


def _redact_query(query: str) -> str:
    """``a=1&listenKey=x`` -> ``a=***&listenKey=***``; ``timeUnit=MICROSECOND`` as it is; a
    part that does not look like ``name=value`` -> ``***``."""
    shown = []
    for part in query.split("&"):
        name, equals, value = part.partition("=")
        if not equals or not _NAME.fullmatch(name):
            shown.append("***")
        elif name in _SHOWN_PARAMETERS and _PLAIN_VALUE.fullmatch(value):
            shown.append(part)
        else:
            shown.append(f"{name}=***")
    return "&".join(shown)


def redact_key(key: str | None) -> str:
    """An API key as logs, errors and ``repr`` may show it: its first 4 characters at most."""
    return "None" if key is None else key[:4] + "..."


def redact_text(text: str, *urls: object) -> str:
    """``text`` with the user name and password of each of ``urls`` replaced by ``***`` (raw
    and percent-decoded), e.g. an exception message that quotes a URL."""
    for url in urls:
        for secret in _userinfo_parts(url):
            text = text.replace(secret, "***")
    return text


def _looks_like_userinfo(authority: str) -> bool:
    """``user:pa`` (before an unencoded '/'): a colon not followed by a port number."""
    host, colon, port = authority.rpartition(":")
    return bool(colon) and bool(host) and not port.isdigit()


def _userinfo_parts(url: object) -> list[str]:
    if not isinstance(url, str):
        return []
    rest = url.partition("://")[2] or url
    ends = [i for i in (rest.find(c) for c in _AUTHORITY_ENDS) if i >= 0]
    authority = rest[: min(ends, default=len(rest))]
    if "@" in authority:
        userinfo = authority.rsplit("@", 1)[0]
    elif "@" in rest and _looks_like_userinfo(authority):
        userinfo = rest.rsplit("@", 1)[0]
    else:
        return []
    parts: set[str] = set()
    for piece in (userinfo, *userinfo.split(":", 1)):
        for form in (piece, unquote(piece)):
            if len(form) >= 2:  # never scrub single letters out of a whole message
                parts.add(form)
    return sorted(parts, key=len, reverse=True)


# -- dataclasses with secrets: mark the field, the repr follows ---------------------------------

SECRET_URL = {"secret": "url"}
"""Field metadata: a URL that may hold ``user:password@`` or a query (shown by redact_url)."""
SECRET = {"secret": "hidden"}
"""Field metadata: a secret never shown (an API secret, a private key): ``'***'``."""
API_KEY = {"secret": "key"}
"""Field metadata: an API key, shown as its first 4 characters: ``'abcd...'``."""


def redact_value(value: object, kind: object) -> str:
    """The ``repr`` of a field marked ``kind`` (see SECRET_URL, SECRET, API_KEY)."""
    if value is None:
        return "None"
    if kind == "url":
        return repr(redact_url(value))
    if kind == "key" and isinstance(value, str):
        return repr(redact_key(value))
    return "'***'"


def redacted_repr(instance: object) -> str:
    """``ClassName(field=value, ...)`` of a dataclass, each field marked with a secret kind
    in its metadata redacted, unmarked fields as ``repr`` shows them (``repr=False`` skipped)."""
    import dataclasses

    shown = []
    for item in dataclasses.fields(instance):  # type: ignore[arg-type]
        kind = item.metadata.get("secret")
        if kind is None and not item.repr:
            continue
        value = getattr(instance, item.name)
        text = repr(value) if kind is None else redact_value(value, kind)
        shown.append(f"{item.name}={text}")
    return f"{type(instance).__name__}({', '.join(shown)})"
