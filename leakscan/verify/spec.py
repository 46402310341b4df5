"""Verification specs: how to ask a provider whether a secret is live, read from detector files.

Pure data and validation; the HTTP side lives in `verify.engine`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

KINDS = ("http", "aws-sigv4")
_SPEC_KEYS = {"kind", "method", "url", "headers", "form", "json", "body", "basic", "valid", "restricted",
              "invalid", "identity", "hosts", "intrusive", "rate"}  # fmt: skip
_CHECK_KEYS = {"status", "json"}
_HOST_ENTRY = re.compile(r"(?i)^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[1-9][0-9]{0,4})?$")


class SpecError(ValueError):
    pass


@dataclass(frozen=True)
class Check:
    """A response condition: any of `status` (if given) and every json path condition."""

    status: tuple[int, ...] = ()
    json: tuple[tuple[str, Any], ...] = ()

    def matches(self, status: int, doc: Any) -> bool:
        if self.status and status not in self.status:
            return False
        for path, want in self.json:
            got = json_path(doc, path)
            if want == "*":
                if got is None:
                    return False
            elif got != want:
                return False
        return True


@dataclass(frozen=True)
class VerifySpec:
    kind: str = "http"
    method: str = "GET"
    url: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    form: tuple[tuple[str, str], ...] | None = None
    json_body: Any = None
    body: str | None = None
    basic: tuple[str, str] | None = None
    valid: Check | None = None
    restricted: Check | None = None
    invalid: Check | None = None
    identity: tuple[tuple[str, str], ...] = ()
    hosts: tuple[str, ...] = ()
    intrusive: bool = False
    rate: float = 5.0
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def default_host(self) -> str:
        return urlsplit(self.url).hostname or ""

    def allows(self, host: str, port: int) -> bool:
        """Whether a filled-in URL may go to host:port: the spec's own host and port, or for a
        `{host}` URL a host under one of `hosts` on port 443 (or the port a `hosts` entry
        names, `suffix:port`). By name *and* port: trusting a name on any port would let
        scanned content pick a local service to talk to."""
        if "{host}" not in self.url:
            parts = urlsplit(self.url)
            return (host, port) == (parts.hostname, parts.port or 443)
        for entry in self.hosts:
            suffix, _, want = entry.lower().partition(":")
            if (host == suffix or host.endswith("." + suffix)) and port == (int(want) if want else 443):
                return True
        return False


def json_path(doc: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(doc, dict):
            doc = doc.get(part)
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            return None
    return doc


def _check(raw: Any, where: str, name: str) -> Check | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not raw or set(raw) - _CHECK_KEYS:
        raise SpecError(f"{where}: verify.{name} must be a table with status and/or json")
    status = raw.get("status", [])
    if isinstance(status, int):
        status = [status]
    if not isinstance(status, list) or not all(isinstance(s, int) and 100 <= s <= 599 for s in status):
        raise SpecError(f"{where}: verify.{name}.status must be HTTP status codes")
    conds = raw.get("json", {})
    if not isinstance(conds, dict):
        raise SpecError(f"{where}: verify.{name}.json must be a table of path = value")
    return Check(tuple(status), tuple(sorted(conds.items())))


def _pairs(raw: Any, where: str, name: str) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise SpecError(f"{where}: verify.{name} must be a table of strings")
    return tuple(raw.items())


def parse_spec(raw: dict[str, Any], where: str) -> VerifySpec:
    unknown = set(raw) - _SPEC_KEYS
    if unknown:
        raise SpecError(f"{where}: verify: unknown key(s) {', '.join(sorted(unknown))}")
    kind = raw.get("kind", "http")
    if kind not in KINDS:
        raise SpecError(f"{where}: verify.kind must be one of {', '.join(KINDS)}")
    url = raw.get("url", "")
    if kind == "http":
        if not isinstance(url, str) or not url.startswith("https://") or not urlsplit(url).hostname:
            raise SpecError(f"{where}: verify.url must be an https:// URL")
    method = raw.get("method", "GET")
    if method not in ("GET", "POST", "HEAD", "PUT", "DELETE"):
        raise SpecError(f"{where}: verify.method must be GET, POST, HEAD, PUT or DELETE")
    bodies = [k for k in ("form", "json", "body") if k in raw]
    if len(bodies) > 1:
        raise SpecError(f"{where}: verify: give at most one of form, json, body")
    basic = raw.get("basic")
    if basic is not None and (not isinstance(basic, list) or len(basic) != 2 or not all(isinstance(b, str) for b in basic)):
        raise SpecError(f"{where}: verify.basic must be [user, password]")
    if "body" in raw and not isinstance(raw["body"], str):
        raise SpecError(f"{where}: verify.body must be a string")
    hosts = raw.get("hosts", [])
    if not isinstance(hosts, list) or not all(isinstance(h, str) and _HOST_ENTRY.match(h) for h in hosts):
        raise SpecError(f"{where}: verify.hosts must be a list of host names (optionally name:port)")
    if "{host}" in url and not hosts:
        raise SpecError(f"{where}: verify.url uses {{host}}: list the allowed host suffixes in verify.hosts")
    rate = raw.get("rate", 5.0)
    if not isinstance(rate, (int, float)) or not 0 < rate <= 1000:
        raise SpecError(f"{where}: verify.rate must be requests per second, 0 < rate <= 1000")
    spec = VerifySpec(
        kind=kind, method=method, url=url, headers=_pairs(raw.get("headers"), where, "headers"),
        form=_pairs(raw["form"], where, "form") if "form" in raw else None, json_body=raw.get("json"),
        body=raw.get("body"), basic=tuple(basic) if basic else None,
        valid=_check(raw.get("valid"), where, "valid"), restricted=_check(raw.get("restricted"), where, "restricted"),
        invalid=_check(raw.get("invalid"), where, "invalid"), identity=_pairs(raw.get("identity"), where, "identity"),
        hosts=tuple(hosts), intrusive=bool(raw.get("intrusive", False)), rate=float(rate),
    )  # fmt: skip
    if kind == "http" and (spec.valid is None or spec.invalid is None):
        raise SpecError(f"{where}: verify needs both valid and invalid conditions")
    return spec
