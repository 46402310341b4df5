"""The offline checks for base64-wrapped credentials in config files (Docker config.json `auth`,
kubeconfig `client-key-data`) and the template fields that generate them."""

from __future__ import annotations

import base64
import json
import random

from leakscan.checks import CHECKS, check_base64_pem, check_base64_userpass
from leakscan.examples import expand, pem

from helpers import token


def b64(text: str | bytes) -> bytes:
    return base64.b64encode(text.encode() if isinstance(text, str) else text)


def test_base64_userpass_accepts_a_user_and_a_generated_password():
    password = token("{b62:24}")
    assert check_base64_userpass(b64(f"ml-bot:{password}"))
    assert check_base64_userpass(b64(f"oauth2accesstoken:{token('ya29.{b64url:60}')}"))


def test_base64_userpass_rejects_documentation_values_and_non_logins():
    assert not check_base64_userpass(b64("username:password"))  # Docker's own example
    assert not check_base64_userpass(b64("user:changeme"))
    assert not check_base64_userpass(b64("user:<your-token>"))
    assert not check_base64_userpass(b64("user:xxxxxxxxxxxx"))
    assert not check_base64_userpass(b64("user:abc"))  # too short to be a credential
    assert not check_base64_userpass(b64(":" + token("{b62:24}")))  # no user
    assert not check_base64_userpass(b64(token("{b62:30}")))  # no colon: not a login
    assert not check_base64_userpass(b64(b"user:\x00\x01\xff" + bytes(range(200, 230))))  # binary
    assert not check_base64_userpass(b"not base64 at all!")
    assert not check_base64_userpass(token("{b64:40}").encode())  # random base64 decodes to noise


def test_base64_pem_accepts_an_encoded_private_key_only():
    rng = random.Random(7)
    assert check_base64_pem(b64(pem(rng, "RSA")))
    assert check_base64_pem(b64(pem(rng, "EC")))
    assert check_base64_pem(b64(pem(rng, "")))  # PKCS#8
    cert = pem(rng, "RSA").replace("RSA PRIVATE KEY", "CERTIFICATE")
    assert not check_base64_pem(b64(cert))  # client-certificate-data is public
    assert not check_base64_pem(b64("-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----\n"))
    assert not check_base64_pem(b"LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQ" + token("{b64:400}").encode())


def test_checks_are_registered_under_the_names_rule_files_use():
    assert CHECKS["base64-userpass"] is check_base64_userpass
    assert CHECKS["base64-pem"] is check_base64_pem


def test_template_fields_generate_what_the_checks_accept():
    _, auth = expand("{b64-userpass:deployer}", random.Random(1))
    user, _, password = base64.b64decode(auth).decode().partition(":")
    assert user == "deployer" and len(password) == 24
    assert check_base64_userpass(auth.encode())
    _, key = expand("{pem-b64:EC}", random.Random(2))
    assert base64.b64decode(key).startswith(b"-----BEGIN EC PRIVATE KEY-----\n")
    assert check_base64_pem(key.encode())


def test_cloudflare_tunnel_and_bech32_fields():
    from leakscan.checks import check_base64_json

    _, tunnel = expand("{cf-tunnel}", random.Random(3))
    doc = json.loads(base64.b64decode(tunnel))
    assert tunnel.startswith("eyJhIjoi") and set(doc) == {"a", "t", "s"} and len(doc["a"]) == 32
    assert check_base64_json(tunnel.encode())
    _, ident = expand("{bech32:58}", random.Random(4))
    assert len(ident) == 58 and not set(ident) & set("BIO1abcdefghijklmnopqrstuvwxyz")
