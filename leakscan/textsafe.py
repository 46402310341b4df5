"""Text that reaches a person — a terminal, a log, a report, a notification — carries no raw
secret and no control character.

Everything shown is attacker-influenced somewhere: a path or a ref comes from a pushed repository,
an error text from a provider's (or an impostor's) HTTP answer, which may echo the URL we called
with a token in it. `scrub` is the one function that renders such text; `escape` alone is for text
that holds no secret (paths, refs, messages).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote, quote_plus

from .lazyre import lazy

# C0 controls (but tab), DEL, C1 controls, and the Unicode line/paragraph separators and bidi
# overrides a terminal or a log reader may act on.
_CONTROL = lazy("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r"}
# scheme://host[:port] then anything up to white space or a quote: the path and query of a URL
# may hold a token (Telegram's bot<token>/, ?key=…), the host part is what people need to see.
_URL = lazy(r"(?i)\b([a-z][a-z0-9+.-]{1,15}://)([^/\s?#'\"<>@]*@)?([^/\s?#'\"<>]*)([/?#][^\s'\"<>\])]*)?")


def escape(text: object) -> str:
    """Control characters shown as `\\x1b`, newlines as `\\n`: one line, nothing a terminal acts on."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                                              else f"\\u{ord(m.group()):04x}"), str(text))  # fmt: skip


def scrub(text: object, secrets: Iterable[str | bytes] = ()) -> str:
    """`text` with every known secret replaced by `[secret]`, every URL cut to its scheme and
    host (credentials, path and query dropped), then escaped onto one line."""
    out = str(text)
    known = {s.decode("utf-8", "replace") if isinstance(s, bytes) else s for s in secrets if s}
    # as sent, too: a token with `|` or `/` travels percent-encoded in a URL an answer may echo
    forms = {form for secret in known if len(secret) >= 4
             for form in (secret, quote(secret, safe=""), quote_plus(secret), quote(secret))}  # fmt: skip
    for form in sorted(forms, key=len, reverse=True):
        out = out.replace(form, "[secret]")
    out = _URL.sub(lambda m: m.group(1) + m.group(3) + ("/…" if m.group(4) else ""), out)
    return escape(out)


def reason(exc: BaseException, secrets: Iterable[str | bytes] = (), limit: int = 160) -> str:
    """Why something failed, for a skip or a log: the exception's first line (its type when it
    has no text), scrubbed, then shortened (a cut made first could leave half a secret that
    `scrub` would no longer recognise)."""
    text = str(exc)
    return scrub(text.splitlines()[0] if text else type(exc).__name__, secrets)[:limit]
