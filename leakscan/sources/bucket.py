"""Source: a Hub storage bucket (`buckets/ns/name`): files people sync from training jobs —
checkpoints, logs, `.env` files — outside any git repository.

The bucket is listed through huggingface_hub (`list_bucket_tree`, every page), and each file is
planned, fetched and read as LFS content is (`sources/lfs.py`: the same size and kind rules, the
same per-repository budget and content cache, range reads for weights' headers and zip
directories), through the file's `{endpoint}/buckets/{id}/resolve/{path}` — the route
huggingface_hub's `get_bucket_file_metadata` asks — whose one redirect to storage is followed
as for LFS. huggingface_hub's own `download_bucket_files` goes through Xet's native client,
which has no byte limit or range reads and makes its own connections outside the guarded client.

A bucket file's id is its Xet hash, not a sha256: what arrives is checked by size. Findings
carry `source: bucket`, the file's path and its upload time.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

from ..model import Finding, Place, Skip
from ..textsafe import reason
from .base import Blob
from .lfs import ContentCache, LfsClient, LfsOptions, LfsSource, Pointer


class BucketSource(LfsSource):
    label, noun = "bucket", "bucket files"

    def __init__(self, repo, client: LfsClient, options: LfsOptions) -> None:
        super().__init__(None, client, options)
        self.repo = repo
        self.listing_error: str | None = None

    def listing(self) -> Iterator[Blob | Skip]:
        yield from super().listing()
        if self.listing_error is not None:
            yield Skip("(bucket)", f"cannot list the bucket: {self.listing_error}")

    def pointers(self) -> dict[str, Pointer]:
        from .hubapi import api

        found: dict[str, Pointer] = {}
        try:
            for item in api(self.repo.endpoint).list_bucket_tree(self.repo.repo_id, recursive=True):
                if getattr(item, "type", "") != "file" or not item.xet_hash:
                    continue
                date = item.uploaded_at.isoformat() if item.uploaded_at else None
                ptr = found.setdefault(item.xet_hash, Pointer(item.xet_hash, int(item.size)))
                ptr.places.append(Place(item.path, "bucket", None, None, None, date))
        except Exception as exc:  # HTTP errors and the client's connection errors: a skip, what was listed is scanned
            self.listing_error = reason(exc)
        return found

    def _resolve_url(self, blob: Blob) -> str | None:
        return f"{self.client.repo_url}/resolve/{quote(blob.places[0].path)}"

    def finish(self, findings: list[Finding], scanned: list[tuple[str, int]]) -> list[Finding]:
        self.client.close()
        for f in findings:
            f.in_head = True  # a bucket has no history: what it holds is what anyone can read now
        return findings


def bucket_source(repo, options: LfsOptions) -> BucketSource:
    from .hubapi import hub_token

    client = LfsClient(repo.web_url, repo.endpoint, hub_token(), ContentCache.default(), batch_api=False)
    return BucketSource(repo, client, options)
