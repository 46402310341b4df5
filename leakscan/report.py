"""Render a scan result: a readable table, JSON, JSON Lines, SARIF 2.1.0, or one HTML page."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import IO, Any
from urllib.parse import quote

from . import __version__
from .detectors import RuleSet
from .findings import UNSAFE_RULES
from .model import Finding, Skip
from .schema import SCHEMA_VERSION
from .textsafe import escape

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_SEVERITY_SCORE = {"low": "3.0", "medium": "5.5", "high": "8.0", "critical": "9.5"}
_SEVERITY_LEVEL = {"low": "note", "medium": "warning", "high": "error", "critical": "error"}
_VERIFICATION_STYLE = {"verified": "bold red", "invalid": "dim", "unknown": "yellow"}
_UNSAFE_STYLE = {"critical": "bold red", "low": "yellow"}


def render(fmt: str, findings: Sequence[Finding], out: IO[str], *, skipped: Sequence[Skip] = (),
           ruleset: RuleSet | None = None, redact: bool = False, summary: str = "",
           color: bool = False) -> None:  # fmt: skip
    if fmt in ("json", "jsonl"):
        # findings, then what could not be scanned and why ("type" tells them apart)
        # every item says which report schema it follows (`leakscan schema`)
        items = [{"schema_version": SCHEMA_VERSION, **i} for i in
                 [f.to_dict(redact=redact) for f in findings] + [s.to_dict() for s in skipped]]  # fmt: skip
        if fmt == "json":
            json.dump(items, out, indent=2)
            out.write("\n")
        else:
            out.writelines(json.dumps(i) + "\n" for i in items)
    elif fmt == "sarif":
        json.dump(sarif(findings, skipped, ruleset, redact=redact), out, indent=2)
        out.write("\n")
    elif fmt == "html":
        from .ui.render import html_report

        html_report(findings, out, skipped=skipped, summary=summary)
    elif fmt == "table":
        table(findings, skipped, out, summary=summary, color=color)
    else:
        raise ValueError(f"unknown format {fmt!r}")


PLAIN_ROWS = 500  # above this, plain output draws the table itself: rich takes ~1 ms a row


def table(findings: Sequence[Finding], skipped: Sequence[Skip], out: IO[str], *, summary: str,
          color: bool) -> None:  # fmt: skip
    if not (findings or skipped or color):
        # one line of plain text: rich (a twentieth of a second to import) would add nothing
        out.write(f"{summary}\n" if summary else "")
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(file=out, force_terminal=color, no_color=not color, width=None if color else 160,
                      highlight=False, soft_wrap=False)  # fmt: skip
    if len(findings) > PLAIN_ROWS and not color:
        # rich's layout of 85,000 rows took minutes, past any hook's timeout
        out.write(_plain_table(_rows(findings)))
    elif findings:
        t = Table(show_lines=False, header_style="bold", expand=False)
        t.add_column("Location", overflow="fold")
        t.add_column("Detector")
        t.add_column("Secret")
        t.add_column("Commit")
        t.add_column("Status")
        for (where, detector, secret, commit, status), f in zip(_rows(findings), findings):
            # Text cells: rich reads neither markup (`[red]`) nor emoji codes (`:100:`) in them
            style = _UNSAFE_STYLE.get(f.severity or "", "") if f.unsafe else _VERIFICATION_STYLE.get(f.verification, "")
            t.add_row(Text(where), Text(detector), Text(secret), Text(commit), Text(status, style=style))
        console.print(t)
    for s in skipped:
        where = s.path + (f"!{s.container}" if s.container else "")
        console.print(Text(f"skipped {escape(where)}: {escape(s.reason)}", style="yellow"))
    if summary:
        console.print(summary, style="bold", soft_wrap=True)


_HEADER = ("Location", "Detector", "Secret", "Commit", "Status")


def _rows(findings: Sequence[Finding]) -> list[tuple[str, str, str, str, str]]:
    rows, previous = [], None
    for f in findings:
        # escaped: a path or container name comes from the scanned content
        place = escape((f"{f.repo}:" if f.repo else "") + f.path + (f"!{f.container}" if f.container else ""))
        shown = place if place != previous else "  ″"
        previous = place
        if f.unsafe:  # a model file: where in the pickle stream, and how bad (nothing to verify)
            at = f"{shown}@{f.offset}" if f.offset is not None else shown
            rows.append((at, f.detector, escape(f.redacted), (f.commit or "")[:10], f.severity or ""))
            continue
        rows.append((f"{shown}:{f.line}:{f.column}", f.detector, f.redacted, (f.commit or "")[:10], f.verification))
    return rows


def _plain_table(rows: list[tuple[str, ...]]) -> str:
    """The table rich draws without colour, drawn directly (cells are not folded)."""
    from rich.cells import cell_len

    widths = [max(cell_len(r[i]) for r in [_HEADER, *rows]) for i in range(len(_HEADER))]

    def line(cells: Sequence[str], edge: str) -> str:
        return edge[0] + edge[1].join(f" {c}{' ' * (w - cell_len(c))} " for c, w in zip(cells, widths)) + edge[2] + "\n"

    def rule(chars: str) -> str:
        return chars[0] + chars[2].join(chars[1] * (w + 2) for w in widths) + chars[3] + "\n"

    return "".join([rule("┏━┳┓"), line(_HEADER, "┃┃┃"), rule("┡━╇┩"), *(line(r, "│││") for r in rows), rule("└─┴┘")])


def sarif(findings: Sequence[Finding], skipped: Sequence[Skip], ruleset: RuleSet | None, *,
          redact: bool) -> dict[str, Any]:  # fmt: skip
    rules = list(ruleset.rules) if ruleset else []
    used = {f.detector for f in findings}
    rules = [r for r in rules if r.id in used] or []
    index = {r.id: i for i, r in enumerate(rules)}
    sarif_rules = [
        {
            "id": r.id,
            "name": "".join(p.capitalize() for p in r.id.split("-")),
            "shortDescription": {"text": r.description},
            "fullDescription": {"text": f"{r.description} ({r.provider_name})"},
            "help": {"text": f"A {r.description} was found. Revoke or rotate it with "
                             f"{r.provider_name}, then remove it from the code and its history."},
            "defaultConfiguration": {"level": _SEVERITY_LEVEL[r.severity]},
            "properties": {"tags": ["security", "secret", r.provider], "precision": "medium" if r.generic else "high",
                           "security-severity": _SEVERITY_SCORE[r.severity]},
        }  # fmt: skip
        for r in rules
    ]
    for detector in sorted(d for d in used if d in UNSAFE_RULES):
        index[detector] = len(sarif_rules)
        sarif_rules.append(_unsafe_rule(detector))
    results = []
    for f in findings:
        if f.unsafe:
            results.append(_unsafe_result(f, index, redact))
            continue
        lines = f.secret.split("\n")
        end_line = f.line + len(lines) - 1
        end_col = (f.column + len(f.secret)) if len(lines) == 1 else len(lines[-1]) + 1
        result: dict[str, Any] = {
            "ruleId": f.detector,
            "level": _SEVERITY_LEVEL[rules[index[f.detector]].severity] if f.detector in index else "error",
            "message": {"text": f"{f.description} {f.redacted} ({f.verification})"},
            "locations": [{
                "physicalLocation": {
                    "artifactLocation": {"uri": quote(f.path)},
                    "region": {"startLine": f.line, "startColumn": f.column, "endLine": end_line, "endColumn": end_col},
                }
            }],
            "partialFingerprints": {"primaryLocationLineHash": f.fingerprint, "leakscan/v1": f.fingerprint},
            "properties": {k: v for k, v in f.to_dict(redact=redact).items()
                           if v is not None and k not in ("path", "line", "column", "description")},
        }  # fmt: skip
        if f.detector in index:
            result["ruleIndex"] = index[f.detector]
        results.append(result)
    notifications = [
        {"level": "warning", "message": {"text": f"skipped: {s.reason}"},
         "locations": [{"physicalLocation": {"artifactLocation": {"uri": quote(s.path)}}}]}  # fmt: skip
        for s in skipped
    ]
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "leakscan", "version": __version__, "semanticVersion": __version__,
                                "rules": sarif_rules}},
            "invocations": [{"executionSuccessful": True, "toolExecutionNotifications": notifications}],
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    }  # fmt: skip


def _unsafe_rule(detector: str) -> dict[str, Any]:
    critical = not detector.endswith("-unknown")
    return {
        "id": detector,
        "name": "".join(p.capitalize() for p in detector.split("-")),
        "shortDescription": {"text": UNSAFE_RULES[detector]},
        "fullDescription": {"text": UNSAFE_RULES[detector] + " (torch.load, pickle.load, joblib.load, numpy.load "
                                    "with allow_pickle, Keras load_model)"},
        "help": {"text": "Loading this file runs code on the machine that loads it. Do not load it; remove it from "
                         "the repository and its history, and publish weights as safetensors."
                         if critical else "Check that this import is expected in the model file."},
        "defaultConfiguration": {"level": "error" if critical else "note"},
        "properties": {"tags": ["security", "unsafe-model-file"], "precision": "high" if critical else "low",
                       "security-severity": _SEVERITY_SCORE["critical" if critical else "low"]},
    }  # fmt: skip


def _unsafe_result(f: Finding, index: dict[str, int], redact: bool) -> dict[str, Any]:
    """A model file that runs code: located by file (and member, opcode offset in properties),
    as it has no line."""
    return {
        "ruleId": f.detector,
        "ruleIndex": index[f.detector],
        "level": _SEVERITY_LEVEL[f.severity or "critical"],
        "message": {"text": f"{f.description}: {f.redacted}" + (f" in {f.container}" if f.container else "")},
        "locations": [{"physicalLocation": {"artifactLocation": {"uri": quote(f.path)}}}],
        "partialFingerprints": {"primaryLocationLineHash": f.fingerprint, "leakscan/v1": f.fingerprint},
        "properties": {k: v for k, v in f.to_dict(redact=redact).items()
                       if v is not None and k not in ("path", "line", "column", "description")},
    }  # fmt: skip
