"""Offline checks and false-positive filters that rule files name.

A rule lists `checks = [...]` (each must pass) and `filters = [...]` (each must not reject).
Everything here is pure: bytes in, bool out. Adding a *kind* of check means adding a function
here; adding a provider never does.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import time
import zlib
from collections import Counter
from collections.abc import Callable

from .lazyre import lazy_import, lazy_regex

regex = lazy_import("regex")

B62_DIGITS = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
B36_DIGITS = b"0123456789abcdefghijklmnopqrstuvwxyz"


def shannon_entropy(data: bytes) -> float:
    if not data:
        return 0.0
    n = len(data)
    return -sum(c / n * math.log2(c / n) for c in Counter(data).values())


def to_base(value: int, digits: bytes, width: int) -> bytes:
    out = bytearray()
    base = len(digits)
    while value:
        value, r = divmod(value, base)
        out.append(digits[r])
    return bytes(reversed(out)).rjust(width, digits[:1])


def crc32_base62(body: bytes) -> bytes:
    """GitHub/npm checksum: CRC-32 of the random part in base62, left-padded to 6."""
    return to_base(zlib.crc32(body), B62_DIGITS, 6)


def gitlab_crc36(text: bytes) -> bytes:
    """GitLab routable-token checksum: CRC-32 of everything before it, base36, width 7."""
    return to_base(zlib.crc32(text), B36_DIGITS, 7)


# ---------------------------------------------------------------------------------------------
# checks: must all pass for a match to become a candidate


def check_crc32_base62(secret: bytes) -> bool:
    _, sep, rest = secret.partition(b"_")
    if not sep or len(rest) < 7:
        return False
    return crc32_base62(rest[:-6]) == rest[-6:]


def check_gitlab_routable(secret: bytes) -> bool:
    return len(secret) > 7 and gitlab_crc36(secret[:-7]) == secret[-7:]


def b64url_decode(data: bytes) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(data + b"=" * (-len(data) % 4))
    except (binascii.Error, ValueError):
        return None


def _json_object(raw: bytes | None) -> dict | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


# The jwt.io sample token and its cousins appear in countless tutorials.
_DOC_JWT_SUBJECTS = {"1234567890"}


def check_jwt(secret: bytes) -> bool:
    """Header and payload are base64url JSON objects with an alg; not expired; not a doc sample
    nor a token that is public by design (Supabase `anon`)."""
    parts = secret.split(b".")
    if len(parts) != 3:
        return False
    header = _json_object(b64url_decode(parts[0]))
    payload = _json_object(b64url_decode(parts[1]))
    if header is None or payload is None or "alg" not in header:
        return False
    if str(header.get("alg", "")).lower() != "none" and len(parts[2]) < 16:
        return False
    exp = payload.get("exp")
    if isinstance(exp, (int, float)) and exp < time.time():
        return False
    if payload.get("role") == "anon":
        return False
    if str(payload.get("sub")) in _DOC_JWT_SUBJECTS or payload.get("name") == "John Doe":
        return False
    return True


_JWT_REGISTERED_CLAIMS = ("iss", "sub", "aud", "exp", "nbf", "iat", "jti")


def check_jwt_claims(secret: bytes) -> bool:
    """The payload carries a registered claim (iss, sub, exp …): issued tokens do, while
    tutorial tokens such as {"some": "payload"} do not."""
    parts = secret.split(b".")
    payload = _json_object(b64url_decode(parts[1])) if len(parts) == 3 else None
    return payload is not None and any(c in payload for c in _JWT_REGISTERED_CLAIMS)


def check_jwt_service_role(secret: bytes) -> bool:
    """A JWT whose payload grants `"role": "service_role"` (Supabase secret project key)."""
    parts = secret.split(b".")
    payload = _json_object(b64url_decode(parts[1])) if len(parts) == 3 else None
    return payload is not None and payload.get("role") == "service_role"


_SAS_EXPIRY = lazy_regex(rb"(?:^|&)se=([0-9]{4})-([0-9]{2})-([0-9]{2})")


def check_azure_sas(secret: bytes) -> bool:
    """An Azure SAS query string: carries a signed version (sv=) and its expiry (se=), when
    given, is not in the past — recorded test fixtures and old doc links are dead tokens."""
    text = secret.replace(b"&amp;", b"&")
    if not regex.search(rb"(?:^|&)sv=", text):
        return False
    m = _SAS_EXPIRY.search(text)
    return m is None or tuple(int(g) for g in m.groups()) >= tuple(time.gmtime()[:3])


_PEM_BODY = lazy_regex(rb"(?s)-----BEGIN[ A-Z0-9]*-----(.*?)-----END")
_PEM_HEADER_LINE = lazy_regex(rb"(?m)^[A-Za-z-]+:.*$")
_PEM_ESCAPES = lazy_regex(rb"(?:\\\\|\\)[nr]")
_PEM_CONCAT = lazy_regex(rb"[\"']\s*\+?\s*[\"']")  # per-line quoted strings joined
_PEM_NOISE = lazy_regex(rb"[\s\"',=]")


def check_pem(secret: bytes) -> bool:
    """The body decodes as base64 to a plausible key: DER (starts with a SEQUENCE), an OpenSSH
    key blob, or a PGP packet — so `-----BEGIN PRIVATE KEY-----\\n...` in docs is not reported."""
    m = _PEM_BODY.search(secret)
    if not m:
        return False
    body = _PEM_CONCAT.sub(b"", _PEM_ESCAPES.sub(b"\n", m.group(1)))
    body = _PEM_NOISE.sub(b"", _PEM_HEADER_LINE.sub(b"", body))
    body = body[: len(body) - len(body) % 4]  # padding and PGP's =CRC line are gone; realign
    try:
        raw = base64.b64decode(body, validate=False)
    except (binascii.Error, ValueError):
        return False
    if len(raw) < 64:
        return False
    return raw[0] == 0x30 or raw.startswith(b"openssh-key-v1\0") or raw[0] & 0x80 != 0


def check_putty(secret: bytes) -> bool:
    return b"Private-Lines:" in secret or b"Private-MAC:" in secret


def check_base64_json(secret: bytes) -> bool:
    """Tokens that are base64 of a JSON object (Neptune and similar)."""
    try:
        raw = base64.b64decode(secret + b"=" * (-len(secret) % 4))
    except (binascii.Error, ValueError):
        return False
    return _json_object(raw) is not None


CHECKS: dict[str, Callable[[bytes], bool]] = {
    "crc32-base62": check_crc32_base62,
    "gitlab-crc32": check_gitlab_routable,
    "jwt": check_jwt,
    "azure-sas": check_azure_sas,
    "jwt-claims": check_jwt_claims,
    "jwt-service-role": check_jwt_service_role,
    "pem": check_pem,
    "putty": check_putty,
    "base64-json": check_base64_json,
}


# ---------------------------------------------------------------------------------------------
# filters: any that says "false positive" drops the match

# A placeholder is judged on the whole token: a random key that happens to contain `xxx`, `1234`
# or `test` is still a key. Markers that random key alphabets cannot produce (templates, masks,
# `...`) or that are too long to occur by chance (`example`, `placeholder`) decide on their own.
_MARKER_WORDS = ("example", "sample", "dummy", "placeholder", "redacted", "changeme", "change_me",
                 "insert", "replace", "notreal", "not_real", "secret_here", "token_here", "key_here")
# In one consistent case, as people write them: a random mixed-case key spells `duMmY` now and then.
_PLACEHOLDER_MARKERS = lazy_regex(
    b"|".join(re.escape(v).encode() for w in _MARKER_WORDS for v in (w, w.upper(), w.capitalize()))
    + rb"|\*\*\*|\.\.\.|<[^>]*>|\$\{|\{\{|%\(|\$[A-Z_]{3,}"
)
# Short filler decides only by how much of the token it covers: runs of one character, x runs,
# counting runs (12345, abcde, 98765) and the words people type into a template.
_FILLER = lazy_regex(
    rb"(.)\1{3,}|(?i:x{3,})"
    rb"|(?i:your|my|api|access|secret|private|token|key|here|test|fake|demo|abc|foo|bar|value|none|null"
    rb"|please|paste|put|goes|enter|generated|password|pass|string|random|some|xyz|qwerty|todo|tbd)"
)
_FILLER_SHARE = 0.5


_ALNUM = bytes(1 if chr(b).isalnum() else 0 for b in range(256))
_UP = bytes((b + 1) & 0xFF for b in range(256))
_DOWN = bytes((b - 1) & 0xFF for b in range(256))


def _may_count(secret: bytes, shortest: int) -> bool:
    """Whether `secret` has `shortest` bytes in a row that step by +1 or -1 — at C speed, so the
    exact walk below runs only for the rare token that does (every candidate passes here)."""
    if len(secret) < shortest:
        return False
    tail, gap = secret[1:], b"\0" * (shortest - 1)
    for step in (_UP, _DOWN):
        same = int.from_bytes(secret[:-1].translate(step), "big") ^ int.from_bytes(tail, "big")
        if gap in same.to_bytes(len(tail), "big"):
            return True
    return False


def _counting_runs(secret: bytes, shortest: int = 5) -> list[tuple[int, int]]:
    """Spans of five or more letters or digits that count up or down by one (12345, abcde, 98765);
    a hand-typed fake key strings several together, a random one has at most a short one."""
    if not _may_count(secret, shortest):
        return []
    spans, start = [], 0
    for i in range(1, len(secret) + 1):
        if i < len(secret) and chr(secret[i]).isalnum() and chr(secret[i - 1]).isalnum() and (
                abs(secret[i] - secret[i - 1]) == 1 and (i - start < 2 or secret[i] - secret[i - 1] == secret[i - 1] - secret[i - 2])):  # fmt: skip
            continue
        if i - start >= shortest:
            spans.append((start, i))
        start = i
    return spans


def filler_share(secret: bytes) -> float:
    """How much of the token's letters and digits are filler rather than noise."""
    alnum = secret.translate(_ALNUM)
    body = alnum.count(1)
    if not body:
        return 1.0
    covered = bytearray(len(secret))
    for m in _FILLER.finditer(secret):
        covered[m.start() : m.end()] = b"\1" * (m.end() - m.start())
    for start, end in _counting_runs(secret):
        covered[start:end] = b"\1" * (end - start)
    filler = (int.from_bytes(covered, "big") & int.from_bytes(alnum, "big")).bit_count()
    return filler / body


def filter_placeholder(secret: bytes) -> bool:
    """True = a placeholder, template or documented example: a marker no random key carries, or
    a token made mostly of filler."""
    if _PLACEHOLDER_MARKERS.search(secret):
        return True
    return filler_share(secret) >= _FILLER_SHARE


# For prefix-less generic matches there is no random body to weigh, so a hint anywhere counts.
_GENERIC_HINTS = lazy_regex(rb"(?i:xxxx|fake|test_?key)|your|YOUR|Your|(.)\1{5,}")
_SEQUENCES = (b"0123456789", b"abcdefghijklmnopqrstuvwxyz", b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _has_sequence(data: bytes, run: int = 6) -> bool:
    for seq in _SEQUENCES:
        for i in range(len(seq) - run + 1):
            if seq[i : i + run] in data:
                return True
    return False


_UUID = lazy_regex(rb"(?i)^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_HEX = lazy_regex(rb"^(?:[0-9a-f]+|[0-9A-F]+)$")
_PIECE_SPLIT = lazy_regex(rb"(?V1)[_.\-/:]+|(?<=[a-z])(?=[A-Z])")
_WORDISH = lazy_regex(rb"[A-Za-z][a-z]*[0-9]{0,2}|[A-Z]{2,}[0-9]{0,2}|[0-9]{1,4}")
_ENV_LOOKUP = lazy_regex(
    rb"(?i)^(?:os\.|env\.|process\.env|getenv|environ|settings\.|config\.|self\.|args\.|secrets\.)"
)
_FILE_OR_URL = lazy_regex(rb"(?i)^(?:https?://|/|\./|~/|[a-z]:\\)|\.(?:json|ya?ml|txt|py|pem|key|env)$")


# Keys that are public by design (Mapbox pk., Stripe publishable, PostHog project, Supabase
# publishable): a generic rule must not report them under an api_key/token name either.
_PUBLIC_BY_DESIGN = lazy_regex(rb"^(?:pk\.eyJ|pk_(?:live|test)_|phc_|sb_publishable_)")


def filter_generic(secret: bytes) -> bool:
    """False-positive filters for the prefix-less generic detector: what a reviewer would
    dismiss at a glance."""
    if filter_placeholder(secret) or _PUBLIC_BY_DESIGN.match(secret):
        return True
    if _GENERIC_HINTS.search(secret) or _has_sequence(secret):
        return True
    if _UUID.match(secret) or _ENV_LOOKUP.match(secret) or _FILE_OR_URL.search(secret):
        return True
    # hex digests, git SHAs, LFS oids: hashes of public content, not credentials
    if _HEX.match(secret) and len(secret) in (32, 40, 56, 64, 96, 128):
        return True
    if secret.isalpha() or secret.isdigit():
        return True  # words and numbers
    return looks_like_identifier(secret)


def looks_like_identifier(secret: bytes) -> bool:
    """CamelCase, snake_case, kebab-case or dotted names: pieces that are words, not noise."""
    pieces = [p for p in _PIECE_SPLIT.split(secret) if p]
    return len(pieces) >= 2 and all(_WORDISH.fullmatch(p) for p in pieces)


# Identifier pieces: CamelCase humps, acronyms before a hump (APIChat), digit runs (Seq2Seq).
_ID_SPLIT = lazy_regex(
    rb"(?V1)[_.\-/:]+|(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])"
)
_ID_PIECE = lazy_regex(rb"[A-Z]?[a-z]*[aeiouy][a-z]*|[A-Z]{1,5}|[0-9]{1,4}")  # word, acronym, number


def filter_identifier(secret: bytes) -> bool:
    """For prefix-less keys known to be random mixed-case base62 (Mistral, Cohere, Roboflow…),
    found next to a context keyword: True = reads as a word, identifier, digest or UUID. Unlike
    `generic`, an all-letter value is kept (short random keys lack digits often enough)."""
    if filter_placeholder(secret) or _UUID.match(secret):
        return True
    if secret.lower() == secret or secret.upper() == secret:
        return True  # hex digests, lower-case names, constants: random base62 mixes case
    # Random mixed-case text also splits into humps, but short ones and without vowels.
    pieces = [p for p in _ID_SPLIT.split(secret) if p]
    words = [p for p in pieces if not p.isdigit()]
    return (len(pieces) >= 2 and all(_ID_PIECE.fullmatch(p) for p in pieces)
            and all(4 * sum(p.count(v) for v in b"aeiouy") >= len(p) for p in words if p[1:].islower())
            and sum(map(len, words)) >= 3 * len(words))  # fmt: skip


_CLASSES = (lazy_regex(rb"[a-z]"), lazy_regex(rb"[A-Z]"), lazy_regex(rb"[0-9]"),
            lazy_regex(rb"[^A-Za-z0-9]"))  # fmt: skip


def filter_human_password(secret: bytes) -> bool:
    """Words with a symbol (`geheim$parole`, documentation's example passwords) rather than a
    generated password: fewer than three character classes."""
    return sum(1 for c in _CLASSES if c.search(secret)) < 3


FILTERS: dict[str, Callable[[bytes], bool]] = {
    "placeholder": filter_placeholder,
    "generic": filter_generic,
    "identifier": filter_identifier,
    "human-password": filter_human_password,
}


# ---------------------------------------------------------------------------------------------
# checks for credentials stored base64-encoded inside config files (Docker, kubeconfig)

_DOC_PASSWORDS = {b"password", b"passw0rd", b"secret", b"changeme", b"pass", b"token", b"pat"}


def _b64_strict(secret: bytes) -> bytes | None:
    """The bytes `secret` encodes, read through line breaks (`base64` wraps at 76 columns) and
    missing padding; None when it is not base64."""
    body = bytes(c for c in secret if c not in b" \t\r\n")
    try:
        return base64.b64decode(body + b"=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def check_base64_userpass(secret: bytes) -> bool:
    """base64 of `user:password`, as Docker's config.json keeps registry logins (`auth`): printable
    text, a user, and a password that is neither a placeholder nor a documentation word."""
    raw = _b64_strict(secret)
    if raw is None or not raw.isascii() or not all(32 < c < 127 for c in raw):
        return False
    user, sep, password = raw.partition(b":")
    if not sep or not user or len(password) < 6:
        return False
    return password.lower() not in _DOC_PASSWORDS and not filter_placeholder(password)


def check_base64_pem(secret: bytes) -> bool:
    """base64 of a PEM private key (kubeconfig `client-key-data`) whose body is a plausible key."""
    raw = _b64_strict(secret)
    return raw is not None and b"PRIVATE KEY" in raw[:80] and check_pem(raw)


CHECKS["base64-userpass"] = check_base64_userpass
CHECKS["base64-pem"] = check_base64_pem
