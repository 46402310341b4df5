"""Source: a Space's variables. The Hub shows them to anyone on a public Space and copies them
into every duplicate (secrets are neither shown nor copied), so a token saved as a variable
instead of a secret is published. Each value is scanned as text at `variables/NAME`."""

from __future__ import annotations

from collections.abc import Iterator

from ..model import Place, Skip
from ..textsafe import scrub
from .base import Blob, Source, bytes_opener

MAX_VALUE = 1 << 20


class SpaceVariables(Source):
    """`GET /api/spaces/{id}/variables`, through huggingface_hub's `get_space_variables`. A Space
    whose variables cannot be read (401/403: not public to this caller) is a skip, not an error."""

    def __init__(self, repo) -> None:
        self.repo = repo
        self.opener = bytes_opener

    def listing(self) -> Iterator[Blob | Skip]:
        from .hubapi import api, http_status

        try:
            variables = api(self.repo.endpoint).get_space_variables(self.repo.repo_id)
        except Exception as exc:  # HTTP errors and the client's connection errors
            status = http_status(exc)
            why = "not readable" if status in ("HTTP 401", "HTTP 403") else scrub(status)
            yield Skip("variables", f"cannot read the Space's variables: {why}")
            return
        for name, var in sorted(variables.items()):
            value = getattr(var, "value", None)
            if not isinstance(value, str):
                continue
            data = value.encode("utf-8", "surrogatepass")[:MAX_VALUE]
            yield Blob(None, len(data), (Place(f"variables/{name}", "space-variable"),), data)
