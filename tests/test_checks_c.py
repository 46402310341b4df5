"""The offline checks for wrapped credential formats: base64-wrapped PEM private keys and base64
`user:password` pairs (.npmrc `_auth`)."""

from __future__ import annotations

import base64

from leakscan.checks import CHECKS, check_base64_userpass, check_base64_pem

from helpers import token


def _b64(text: str) -> bytes:
    return base64.b64encode(text.encode())


def test_both_checks_are_registered_for_rule_files():
    assert CHECKS["base64-pem"] is check_base64_pem
    assert CHECKS["base64-userpass"] is check_base64_userpass


def test_a_base64_wrapped_private_key_passes_in_every_wrapping():
    for kind in ("RSA", "EC", "OPENSSH", ""):
        key = token("{pem:%s}" % kind, seed=kind) + "\n"
        assert check_base64_pem(_b64(key)), kind
    wrapped = _b64(token("{pem:RSA}", seed=1))
    # `base64` without -w0 wraps at 76 columns; the check reads through the line breaks
    lines = b"\n".join(wrapped[i : i + 76] for i in range(0, len(wrapped), 76))
    assert check_base64_pem(lines)
    # the template field the rule files use makes what the check accepts
    assert check_base64_pem(token("{pem-b64:EC}", seed=2).encode())


def test_base64_of_certificates_placeholders_and_noise_fails():
    cert = "-----BEGIN CERTIFICATE-----\n" + token("{b64:64}\n{b64:64}", seed=3) + "\n-----END CERTIFICATE-----\n"
    assert not check_base64_pem(_b64(cert))
    assert not check_base64_pem(_b64("-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----\n"))
    body = "-----BEGIN RSA PRIVATE KEY-----\nMIIE...your key here...\n-----END RSA PRIVATE KEY-----\n"
    assert not check_base64_pem(_b64(body))
    assert not check_base64_pem(b"LS0tLS1CRUdJTi" + token("{b64:200}", seed=4).encode())  # decodes to junk
    assert not check_base64_pem(b"LS0tLS1CRUdJTi!!not base64!!")


def test_basic_auth_base64_wants_printable_user_and_password():
    assert check_base64_userpass(_b64("ci-bot:" + token("{b62:16}", seed=5)))
    assert check_base64_userpass(token("{b64-userpass:user}", seed=6).encode())
    assert check_base64_userpass(_b64("deploy@corp:S3cure#pass"))
    assert not check_base64_userpass(_b64("no-colon-in-here"))
    assert not check_base64_userpass(_b64(":" + token("{b62:16}", seed=7)))  # no user
    assert not check_base64_userpass(_b64("user:abc12"))  # password under 6 characters
    assert not check_base64_userpass(base64.b64encode(b"user:\x00\x01\x02binary\xff"))
    assert not check_base64_userpass(token("{b64:40}", seed=8).encode())  # random bytes
    assert not check_base64_userpass(b"${NPM_AUTH}")
