"""Syntax rules shared by specs: DNS names, Kubernetes labels, durations, zones.

Every pattern is applied with ``fullmatch``: with ``match``, Python's ``$`` also matches before a
trailing newline, so "10m\n" or "example.com\n" would pass and be stored.
"""

from __future__ import annotations

import re

from pydantic_core import PydanticCustomError

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
DURATION = re.compile(r"^(?=\d)(\d+h)?(\d+m)?(\d+s)?$")
UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)


def check_label_key(key: str) -> str:
    """A Kubernetes label or taint key: optional DNS-subdomain prefix, '/', then a name."""
    prefix, slash, name = key.rpartition("/")
    if slash and not DNS1123_SUBDOMAIN.fullmatch(prefix):
        raise ValueError(f"label key {key!r}: prefix must be a DNS subdomain")
    if not LABEL_NAME.fullmatch(name):
        raise ValueError(
            f"label key {key!r}: name must be 1-63 alphanumerics, '-', '_' or '.', "
            "starting and ending with an alphanumeric"
        )
    return key


def check_label_value(value: str) -> str:
    if not LABEL_VALUE.fullmatch(value):
        raise ValueError(
            f"label value {value!r}: at most 63 alphanumerics, '-', '_' or '.', "
            "starting and ending with an alphanumeric"
        )
    return value


def check_duration(value: str) -> str:
    if not DURATION.fullmatch(value) or value == "":
        raise ValueError(f"{value!r} is not a duration such as '10m', '3m' or '1h30m'")
    return value


def check_unique(values: list[str], what: str) -> list[str]:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{what} must be unique; {value!r} appears twice")
        seen.add(value)
    return values


def normalise_email(value: str) -> str | None:
    """The owner identity for an ``X-User-Email`` header, or None when it is not an email."""
    candidate = value.strip()
    if len(candidate) > 254 or not EMAIL.fullmatch(candidate):
        return None
    return candidate.lower()


def is_uuid(value: str) -> bool:
    """A resource id in the 8-4-4-4-12 hex form (any version, any case)."""
    return UUID.fullmatch(value) is not None


def rule_error(field: str, message: str) -> PydanticCustomError:
    """A failed cross-field rule, raised by a model validator, that names the offending field.

    pydantic locates a model validator's error at the model itself ("spec"); the ``field`` in
    the context lets the API report "spec.nodeCount" instead.
    """
    return PydanticCustomError("rule", "{message}", {"message": message, "field": field})
