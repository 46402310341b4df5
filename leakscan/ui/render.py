"""The templates (Jinja2, autoescaped: paths, repository names and notes come from scanned
content or from people) for the findings page and the static report, and the per-day chart,
drawn here as numbers for an inline SVG: no script draws anything."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

from ..store.findings import STATUSES
from .query import Day, iso

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"


@lru_cache(maxsize=1)
def environment():
    from datetime import datetime, timezone

    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)  # fmt: skip
    env.filters["iso"] = iso
    env.filters["when"] = lambda ts: datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M") if ts else ""
    env.globals["statuses"] = STATUSES
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(report=False, **context)


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    w: float
    h: float
    label: str


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    width: int
    height: int
    peak: int
    first: str
    last: str


def chart(days: Sequence[Day], width: int = 360, height: int = 60) -> Chart | None:
    if not days:
        return None
    peak = max(d.findings for d in days) or 1
    step = width / len(days)
    bars = []
    for i, d in enumerate(days):
        h = round((height - 2) * d.findings / peak, 1) if d.findings else 0.0
        bars.append(Bar(round(i * step + 1, 1), round(height - 1 - h, 1), round(max(step - 2, 1), 1), h,
                        f"{d.date}: {d.findings} finding{'s' * (d.findings != 1)}"))  # fmt: skip
    return Chart(bars, width, height, peak, days[0].date, days[-1].date)


# ---- the static report (`scan --format html`) -------------------------------------------------


@dataclass(frozen=True)
class ReportRow:
    """A finding as the shared row template draws it; the secret only redacted."""

    fingerprint: str
    redacted: str
    detector: str
    provider: str
    verification: str
    repo: str
    repos: int
    path: str
    container: str | None
    commit: str
    line: int
    link: str | None


def html_report(findings: Sequence, out: IO[str], *, skipped: Sequence = (), summary: str = "") -> None:
    """One self-contained HTML file, redacted whatever --redact says: its style inline, allowed
    by hash in its own Content-Security-Policy, and no script."""
    rows = [ReportRow(f.fingerprint, f.redacted, f.detector, f.provider, f.verification, f.repo or "", 1, f.path,
                      f.container, f.commit or "", f.line,
                      f.url if f.url and f.url.startswith(("https://", "http://")) else None) for f in findings]  # fmt: skip
    css = (STATIC / "ui.css").read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    out.write(environment().get_template("report.html").render(
        report=True, css=css, style_hash=f"sha256-{digest}", rows=rows, skipped=list(skipped), summary=summary))  # fmt: skip
