"""The JSON Schema (draft 2020-12) of the json and jsonl reports: `leakscan schema` prints it.

A json report is an array of items; a jsonl report holds one item per line. Every item carries
`schema_version`: the major version changes when a field is removed or changes meaning; new
optional fields may appear within a version, so consumers ignore fields they do not know.
"""

from __future__ import annotations

from typing import Any

SCHEMA_VERSION = "1"
SCHEMA_ID = "https://leakscan.invalid/schema/report-v1.json"

_NULLABLE_STR = {"type": ["string", "null"]}


def report_schema() -> dict[str, Any]:
    finding = {
        "type": "object",
        "description": "A secret found at one place.",
        "required": ["schema_version", "type", "detector", "provider", "description", "secret", "secret_sha256",
                     "redacted", "path", "line", "column", "commit", "source", "container", "verification",
                     "fingerprint"],  # fmt: skip
        "properties": {
            "schema_version": {"const": SCHEMA_VERSION},
            "type": {"const": "finding"},
            "detector": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]*$", "description": "rule id"},
            "provider": {"type": "string"},
            "description": {"type": "string"},
            "secret": {**_NULLABLE_STR, "description": "the raw secret; null with --redact"},
            "secret_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "redacted": {"type": "string", "description": "a preview such as hf_Ab…yz"},
            "path": {"type": "string"},
            "line": {"type": "integer", "minimum": 1},
            "column": {"type": "integer", "minimum": 1},
            "commit": {**_NULLABLE_STR, "description": "the commit that introduced it (history)"},
            "source": {"type": "string", "description": "file, history, commit-message, staged, stdin, discussion, …"},
            "container": {**_NULLABLE_STR, "description": "the place inside an archive, notebook, pickle or encoding"},
            "verification": {"type": "string", "description": "unverified, verified, invalid, unknown, …"},
            "fingerprint": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
            "author": {"type": "string"},
            "date": {"type": "string"},
            "blob": {"type": "string", "pattern": "^[0-9a-f]{40}([0-9a-f]{24})?$"},
            "in_head": {"type": "boolean"},
            "also_at": {"type": "array", "items": {"type": "string"}},
            "repo": {"type": "string"},
            "url": {"type": "string"},
            "discussion": {"type": "integer"},
            "verification_reason": {"type": "string"},
            "identity": {"type": "object"},
            "restricted": {"type": "boolean"},
        },
    }
    skipped = {
        "type": "object",
        "description": "Something that could not be scanned, and why.",
        "required": ["schema_version", "type", "path", "reason", "container"],
        "properties": {
            "schema_version": {"const": SCHEMA_VERSION},
            "type": {"const": "skipped"},
            "path": {"type": "string"},
            "reason": {"type": "string"},
            "container": _NULLABLE_STR,
        },
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "leakscan report",
        "description": "A leakscan --format json report (an array of items); each line of a jsonl report is one item "
                       "($defs/item). Fields not listed may be added within a schema version.",  # fmt: skip
        "type": "array",
        "items": {"$ref": "#/$defs/item"},
        "$defs": {
            "item": {"oneOf": [{"$ref": "#/$defs/finding"}, {"$ref": "#/$defs/skipped"}]},
            "finding": finding,
            "skipped": skipped,
        },
    }
