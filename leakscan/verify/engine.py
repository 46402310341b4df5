"""Verification engine: asks providers, concurrently (aiohttp), whether found secrets are live.

* one client session; each unique (provider check, secret) asked once per scan (dedupe and
  single-flight), verdicts cached in the store with a TTL;
* a global concurrency limit, a per-provider rate limit, 10 s timeouts, at most 3 attempts with
  exponential backoff and jitter for 429/5xx/connection errors, honouring Retry-After; then
  `unknown` with the reason;
* requests go only to the provider's own host and port (or its `LEAKSCAN_ENDPOINT_<PROVIDER>`
  override), through the guarded client of `leakscan.net` (no redirects; private, loopback and
  link-local addresses only for an override, checked on the address connected to);
* a reason names what failed, rendered by `textsafe.scrub` with the secret it was about: a token
  that travels in the URL (Telegram, Google, Mapbox, Roboflow) never reaches a report that way.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import json
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from ..detectors import Rule, RuleSet
from ..model import Finding
from ..net import USER_AGENT, Client, NetError, Refused, endpoint_overrides, origin  # noqa: F401 (re-exported)
from ..textsafe import scrub
from .spec import VerifySpec, json_path

TIMEOUT = 10.0
MAX_ATTEMPTS = 3
CONCURRENCY = 16
CACHE_TTL = 24 * 3600.0
MAX_RETRY_AFTER = 30.0


@dataclass(frozen=True)
class Verdict:
    state: str  # verified | invalid | unknown | unverified
    reason: str | None = None
    identity: dict[str, Any] = field(default_factory=dict)
    restricted: bool = False


class RateLimiter:
    """At most `rate` request starts per second (a token bucket with a burst of one second)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.updated = time.monotonic()
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self.lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.rate, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)


@dataclass
class _Request:
    method: str
    url: str
    headers: dict[str, str]
    data: bytes | None = None


def _fill(value: Any, secret: str, groups: dict[str, str]) -> Any:
    if isinstance(value, str):
        out = value.replace("{secret}", secret)
        for name, group in groups.items():
            out = out.replace("{" + name + "}", group)
        return out
    if isinstance(value, dict):
        return {k: _fill(v, secret, groups) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, secret, groups) for v in value]
    return value


class Verifier:
    """Use as `async with Verifier(...) as v: await v.verify(findings)`."""

    def __init__(self, ruleset: RuleSet, *, store=None, intrusive: bool = False,
                 overrides: dict[str, str] | None = None, concurrency: int = CONCURRENCY,
                 timeout: float = TIMEOUT, max_attempts: int = MAX_ATTEMPTS,
                 progress: Callable[[int, int], None] | None = None) -> None:  # fmt: skip
        self.rules = ruleset.by_id
        self.store = store
        self.intrusive = intrusive
        self.overrides = endpoint_overrides(overrides)
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.progress = progress
        self._sem = asyncio.Semaphore(concurrency)
        self._limits: dict[str, RateLimiter] = {}
        self._flights: dict[str, asyncio.Task[Verdict]] = {}
        self._client: Client | None = None
        self.requests = 0
        self._done = 0

    async def __aenter__(self) -> Verifier:
        self._client = await Client(self.overrides.values(), timeout=self.timeout).__aenter__()
        return self

    async def __aexit__(self, *exc) -> None:
        if self._client is not None:
            await self._client.__aexit__(*exc)

    # -- the public part -------------------------------------------------------------------

    async def verify(self, findings: Iterable[Finding]) -> None:
        """Sets each finding's verification state (and reason and identity) in place."""
        todo = [f for f in findings if f.verification == "unverified"]
        jobs = [self._one(f) for f in todo]
        if jobs:
            await asyncio.gather(*jobs)

    async def _one(self, finding: Finding) -> None:
        rule = self.rules.get(finding.detector)
        spec = rule.verify if rule else None
        if spec is None:
            return  # stays "unverified": no check for this kind
        if spec.intrusive and not self.intrusive:
            _apply(finding, Verdict("unverified", "intrusive check: enable with --verify-intrusive"))
            return
        key = self._key(rule, spec, finding)
        task = self._flights.get(key)
        if task is None:
            task = asyncio.ensure_future(self._cached(key, rule, spec, finding))
            self._flights[key] = task
        verdict = await task
        _apply(finding, verdict)
        self._done += 1
        if self.progress:
            self.progress(self._done, len(self._flights))

    def _key(self, rule: Rule, spec: VerifySpec, finding: Finding) -> str:
        groups = json.dumps(finding.groups, sort_keys=True)
        return hashlib.sha256(f"{rule.provider}\0{spec.kind}\0{spec.url}\0{groups}\0{finding.secret}".encode()).hexdigest()

    async def _cached(self, key: str, rule: Rule, spec: VerifySpec, finding: Finding) -> Verdict:
        if self.store is not None:
            hit = self.store.verdict(key, CACHE_TTL)
            if hit is not None:
                return Verdict(hit[0], hit[1], hit[2], hit[3])
        verdict = await self._check(rule, spec, finding)
        if verdict.reason:  # the provider's answer, or its failure, may carry the secret
            verdict = replace(verdict, reason=scrub(verdict.reason, [finding.secret]))
        if self.store is not None and verdict.state in ("verified", "invalid"):
            self.store.record_verdict(key, verdict.state, verdict.reason, verdict.identity, verdict.restricted)
        return verdict

    # -- one check ------------------------------------------------------------------------

    async def _check(self, rule: Rule, spec: VerifySpec, finding: Finding) -> Verdict:
        groups = dict(finding.groups)
        try:
            if spec.kind == "aws-sigv4":
                request = _aws_request(finding.secret, groups)
            else:
                request = self._http_request(rule, spec, finding.secret, groups)
            request = self._redirect(rule.provider, request)
        except Refused as exc:
            return Verdict("unknown", str(exc))
        limiter = self._limits.setdefault(rule.provider, RateLimiter(spec.rate))
        reason = "no attempt"
        for attempt in range(self.max_attempts):
            await limiter.wait()
            async with self._sem:
                try:
                    status, headers, body = await self._send(request)
                except Refused as exc:
                    return Verdict("unknown", str(exc))
                except NetError as exc:  # shortened once the secret is out, so no half of it stays
                    reason = scrub(exc, [finding.secret])[:200]
                    wait = None
                else:
                    if status == 429 or status >= 500:
                        reason = f"HTTP {status}"
                        wait = _retry_after(headers.get("Retry-After"))
                    else:
                        verdict = _aws_verdict(status, body) if spec.kind == "aws-sigv4" else _interpret(spec, status, body)
                        # what a provider says about the identity is reported; the secret never
                        identity = {k: v for k, v in verdict.identity.items() if finding.secret not in str(v)}
                        return Verdict(verdict.state, verdict.reason, identity, verdict.restricted)
            if attempt + 1 < self.max_attempts:
                await asyncio.sleep(wait if wait is not None else _backoff(attempt))
        return Verdict("unknown", f"{reason} after {self.max_attempts} attempts")

    def _http_request(self, rule: Rule, spec: VerifySpec, secret: str, groups: dict[str, str]) -> _Request:
        url = _fill(spec.url, secret, groups)
        where = origin(url) if url.startswith("https://") else None
        if "{" in url or where is None or not spec.allows(*where):
            shown = f"{where[0]}:{where[1]}" if where else urlsplit(url).hostname or "that URL"
            raise Refused(f"refused: {shown} is not one of {rule.provider}'s hosts")
        headers = {k: _fill(v, secret, groups) for k, v in spec.headers}
        if spec.basic:
            user, password = (_fill(p, secret, groups) for p in spec.basic)
            headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        data = None
        if spec.form is not None:
            data = urlencode({k: _fill(v, secret, groups) for k, v in spec.form}).encode()
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif spec.json_body is not None:
            data = json.dumps(_fill(spec.json_body, secret, groups)).encode()
            headers.setdefault("Content-Type", "application/json")
        elif spec.body is not None:
            data = _fill(spec.body, secret, groups).encode()
        return _Request(spec.method, url, headers, data)

    def _redirect(self, provider: str, request: _Request) -> _Request:
        """An override replaces scheme, host and port, keeping the path and query; the client
        refuses what is neither an override nor https to a public address."""
        parts = urlsplit(request.url)
        base = self.overrides.get(provider)
        if base:
            b = urlsplit(base)
            request.url = urlunsplit((b.scheme, b.netloc, (b.path.rstrip("/") + parts.path) or "/", parts.query, ""))
        assert self._client is not None
        self._client.check(request.url)
        return request

    async def _send(self, request: _Request) -> tuple[int, Any, bytes]:
        assert self._client is not None
        self.requests += 1
        answer = await self._client.request(request.method, request.url, headers=request.headers, data=request.data,
                                            limit=1 << 20)  # a verdict never needs more  # fmt: skip
        return answer.status, answer.headers, answer.body


def _apply(finding: Finding, verdict: Verdict) -> None:
    finding.verification = verdict.state
    if verdict.reason:
        finding.verification_reason = verdict.reason
    if verdict.identity:
        finding.identity = verdict.identity
    if verdict.restricted:
        finding.restricted = True


def _interpret(spec: VerifySpec, status: int, body: bytes) -> Verdict:
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        doc = None
    for state, check in (("verified", spec.valid), ("restricted", spec.restricted), ("invalid", spec.invalid)):
        if check is not None and check.matches(status, doc):
            if state == "invalid":
                return Verdict("invalid", f"HTTP {status}")
            identity = {name: v for name, path in spec.identity if (v := json_path(doc, path)) is not None
                        and isinstance(v, (str, int, float, bool, list))}  # fmt: skip
            return Verdict("verified", None, identity, restricted=state == "restricted")
    if doc is None and body:
        return Verdict("unknown", f"HTTP {status} with a body that is not the expected JSON")
    return Verdict("unknown", f"unexpected answer: HTTP {status}")


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = dt.datetime.strptime(value, "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=dt.timezone.utc)
        except ValueError:
            return None
        seconds = (when - dt.datetime.now(dt.timezone.utc)).total_seconds()
    return max(0.0, min(seconds, MAX_RETRY_AFTER))


def _backoff(attempt: int) -> float:
    return 0.5 * (2**attempt) * (0.5 + random.random())


# -- AWS: SigV4-signed STS GetCallerIdentity ---------------------------------------------------

_STS_BODY = "Action=GetCallerIdentity&Version=2011-06-15"


def _aws_request(secret: str, groups: dict[str, str], now: dt.datetime | None = None) -> _Request:
    key_id = groups.get("key_id")
    if not key_id:
        raise Refused("needs the access key id next to the secret")
    if key_id.startswith("ASIA"):
        raise Refused("a temporary (ASIA) key needs its session token to be checked")
    now = now or dt.datetime.now(dt.timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    host, region, service = "sts.amazonaws.com", "us-east-1", "sts"
    payload_hash = hashlib.sha256(_STS_BODY.encode()).hexdigest()
    canonical = "\n".join(["POST", "/", "", "content-type:application/x-www-form-urlencoded; charset=utf-8",
                           f"host:{host}", f"x-amz-date:{amz_date}", "", "content-type;host;x-amz-date", payload_hash])  # fmt: skip
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    k = hmac.new(f"AWS4{secret}".encode(), day.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
        "X-Amz-Date": amz_date,
        "Authorization": f"AWS4-HMAC-SHA256 Credential={key_id}/{scope}, SignedHeaders=content-type;host;x-amz-date, Signature={signature}",
    }
    return _Request("POST", f"https://{host}/", headers, _STS_BODY.encode())


def _aws_verdict(status: int, body: bytes) -> Verdict:
    text = body.decode("utf-8", "replace")
    if status == 200 and "<Arn>" in text:
        arn = text.split("<Arn>", 1)[1].split("</Arn>", 1)[0]
        account = text.split("<Account>", 1)[1].split("</Account>", 1)[0] if "<Account>" in text else None
        return Verdict("verified", None, {k: v for k, v in (("arn", arn), ("account", account)) if v})
    if status == 403 and ("InvalidClientTokenId" in text or "SignatureDoesNotMatch" in text):
        return Verdict("invalid", "InvalidClientTokenId" if "InvalidClientTokenId" in text else "SignatureDoesNotMatch")
    return Verdict("unknown", f"unexpected answer: HTTP {status}")


