"""Access to the shared real-world corpus that lives beside the project, when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CORPUS = Path(
    os.environ.get("LISTSERV_CORPUS", Path(__file__).resolve().parents[2] / "shared" / "corpus")
)


def corpus_dir(name: str) -> Path:
    """The corpus folder `name`, or skip the calling test with the reason it is missing."""
    folder = CORPUS / name
    if not folder.is_dir():
        pytest.skip(f"shared corpus not found at {folder} (set LISTSERV_CORPUS to run these cases)")
    return folder


def corpus_files(name: str, pattern: str) -> list[Path]:
    """Files of a corpus folder for parametrize; empty when the corpus is absent."""
    folder = CORPUS / name
    return sorted(folder.glob(pattern)) if folder.is_dir() else []
