"""Job ids: readable, sortable by nothing in particular, unique per source identity."""

from __future__ import annotations

import hashlib
import re


def job_id_for(identity: str, name: str) -> str:
    """`<slug of the file name>-<16 hex of sha256(identity)>`.

    The same identity (bucket, key and version) gives the same id, so a duplicated
    event cannot start a second job.
    """
    stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    slug = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")[:40] or "video"
    digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:16]
    return f"{slug}-{digest}"
