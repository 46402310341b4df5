"""Generate credential-shaped test strings from the templates in detector files.

No realistic secret is ever committed: detector files carry templates such as
`HF_TOKEN = "<<hf_{alpha:34}>>"`, and tokens with the right prefix, length and checksum are made
at test time. `<<` `>>` mark the part a detector must report as the secret; without them the
whole expanded text is the secret.

Fields: {alpha:N} {lower:N} {upper:N} {digits:N} {hex:N} {HEX:N} {b36:N} {b62:N} {b64:N}
{b64url:N} {base32:N} {uuid} {crc-token:PREFIX:N} (PREFIX_ + N base62 + CRC-32 checksum, as
GitHub and npm do) {gitlab-routable:PREFIX} {jwt} {jwt:ROLE} {pem:TYPE} {pem-escaped:TYPE} {openssh}
{neptune} {gcp-sa-b64[:pretty|compact]} {pem-b64:TYPE} {basic-b64}. `{{` and `}}` stand for literal
braces.
"""

from __future__ import annotations

import base64
import json
import random
import string
import time
import uuid

import regex

from .checks import B36_DIGITS, B62_DIGITS, crc32_base62, gitlab_crc36, to_base

ALPHABETS = {
    "alpha": string.ascii_letters,
    "lower": string.ascii_lowercase,
    "upper": string.ascii_uppercase,
    "digits": string.digits,
    "hex": "0123456789abcdef",
    "HEX": "0123456789ABCDEF",
    "b36": string.digits + string.ascii_lowercase,
    "b62": B62_DIGITS.decode(),
    "b64": string.ascii_letters + string.digits + "+/",
    "b64url": string.ascii_letters + string.digits + "-_",
    "base32": string.ascii_uppercase + "234567",
}

_FIELD = regex.compile(r"\{\{|\}\}|\{([A-Za-z0-9-]+)(?::([^{}]*))?\}")


class TemplateError(ValueError):
    pass


def _random_text(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _pem_body(rng: random.Random, kind: str) -> bytes:
    if "OPENSSH" in kind:
        raw = b"openssh-key-v1\0" + rng.randbytes(380)
    elif "PGP" in kind:
        raw = bytes([0x95]) + rng.randbytes(900)
    else:
        raw = b"\x30\x82\x04\xa4" + rng.randbytes(1190)
    return base64.b64encode(raw)


def pem(rng: random.Random, kind: str, newline: str = "\n") -> str:
    body = _pem_body(rng, kind).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    label = kind if "PGP" in kind else f"{kind} PRIVATE KEY".strip()
    if "PGP" in kind:
        label = "PGP PRIVATE KEY BLOCK"
    return newline.join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----"])


def jwt(rng: random.Random, role: str | None = None) -> str:
    header = {"alg": "HS256", "typ": "JWT"}
    payload = {"sub": str(rng.randrange(10**9)), "iat": int(time.time()) - 60,
               "exp": int(time.time()) + 86400 * 365, "scope": "api"}  # fmt: skip
    if role:  # {jwt:ROLE}: a Supabase-style project key (`anon`, `service_role`)
        payload = {"iss": "supabase", "ref": _random_text(rng, ALPHABETS["lower"], 20), "role": role,
                   "iat": int(time.time()) - 60, "exp": int(time.time()) + 86400 * 3650}  # fmt: skip
    return ".".join([_b64url(json.dumps(header).encode()), _b64url(json.dumps(payload).encode()),
                     _b64url(rng.randbytes(32))])  # fmt: skip


def _field(rng: random.Random, name: str, arg: str | None) -> str:
    if name in ALPHABETS:
        if arg is None or not arg.isdigit():
            raise TemplateError(f"{{{name}:N}} needs a length")
        return _random_text(rng, ALPHABETS[name], int(arg))
    if name == "uuid":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    if name == "crc-token":
        prefix, _, n = (arg or "").partition(":")
        body = _random_text(rng, ALPHABETS["b62"], int(n or 30)).encode()
        return f"{prefix}_" + (body + crc32_base62(body)).decode()
    if name == "gitlab-routable":
        payload = _b64url(rng.randbytes(27))
        length = to_base(len(payload), B36_DIGITS, 2).decode()
        text = f"{arg or 'glpat'}-{payload}.01.{length}"
        return text + gitlab_crc36(text.encode()).decode()
    if name == "jwt":
        return jwt(rng, arg)
    if name == "pem":
        return pem(rng, arg or "RSA")
    if name == "pem-escaped":
        return pem(rng, arg or "RSA", newline="\\n")
    if name == "pem-b64":  # a whole PEM block, base64-wrapped (Kubernetes secrets, env vars)
        return base64.b64encode((pem(rng, arg or "RSA") + "\n").encode()).decode()
    if name == "basic-b64":  # base64 of user:password, as .npmrc `_auth` and Basic headers carry
        user = _random_text(rng, ALPHABETS["lower"], 8)
        return base64.b64encode(f"{user}:{_random_text(rng, ALPHABETS['b62'], 16)}".encode()).decode()
    if name == "openssh":
        return pem(rng, "OPENSSH")
    if name == "neptune":
        doc = {"api_address": "https://app.neptune.ai", "api_url": "https://app.neptune.ai",
               "api_key": str(uuid.UUID(int=rng.getrandbits(128), version=4))}  # fmt: skip
        return base64.b64encode(json.dumps(doc).encode()).decode()
    if name == "gcp-sa-b64":  # base64 of a service-account JSON key; arg: pretty | compact
        doc = {"type": "service_account", "project_id": "demo-project-4821",
               "private_key_id": _random_text(rng, ALPHABETS["hex"], 40),
               "private_key": pem(rng, "") + "\n",
               "client_email": "trainer@demo-project-4821.iam.gserviceaccount.com",
               "client_id": _random_text(rng, ALPHABETS["digits"], 21)}  # fmt: skip
        if arg == "compact":
            text = json.dumps(doc, separators=(",", ":"))
        else:
            text = json.dumps(doc, indent=2 if arg == "pretty" else None)
        return base64.b64encode(text.encode()).decode()
    raise TemplateError(f"unknown template field {{{name}}}")


def expand(template: str, rng: random.Random | None = None) -> tuple[str, str]:
    """(text, expected secret) for one example template."""
    rng = rng or random.Random()
    text = _FIELD.sub(lambda m: _field(rng, m.group(1), m.group(2)) if m.group(1) else m.group()[0], template)
    if "<<" in text:
        start = text.index("<<")
        end = text.index(">>", start)
        secret = text[start + 2 : end]
        return text[:start] + secret + text[end + 2 :], secret
    return text, text


def example_problems(rule, matcher, seeds: range = range(3)) -> list[str]:
    """Run a rule's examples through a matcher: each positive must yield exactly its marked
    secret from this rule; no rule may report anything in a negative. Returns the problems."""
    where = f"{rule.source_file}: rule {rule.id}"
    problems = []
    if not rule.examples.positive or not rule.examples.negative:
        problems.append(f"{where}: needs positive and negative examples")
    cases = [("positive", i, t, s) for i, t in enumerate(rule.examples.positive) for s in seeds]
    cases += [("negative", i, t, 0) for i, t in enumerate(rule.examples.negative)]
    for kind, i, template, seed in cases:
        try:
            text, secret = expand(template, random.Random(f"{rule.id}/{kind}/{i}/{seed}"))
        except (TemplateError, ValueError) as exc:
            problems.append(f"{where}: {kind} example {i}: {exc}")
            continue
        found = matcher.scan(b"first line\n" + text.encode() + b"\nlast line\n")
        if kind == "positive":
            got = [c.secret.decode("utf-8", "replace") for c in found if c.rule_id == rule.id]
            if got != [secret]:
                problems.append(f"{where}: positive example {i} gave {got!r} for {text!r}, expected {secret!r}")
        elif found:
            by = ", ".join(sorted({c.rule_id for c in found}))
            problems.append(f"{where}: negative example {i} reported by {by}: {text!r}")
    return problems
