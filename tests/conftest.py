"""Shared test settings: offline always, the benchmark data folder, tiny-model helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

#: The benchmark files (read-only, never copied into the repo): $MNER_DATA or ../shared/data.
DATA_DIR = Path(os.environ.get("MNER_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))

needs_data = pytest.mark.skipif(
    not (DATA_DIR / "twitter2015").is_dir(),
    reason=f"benchmark files not found at {DATA_DIR} (set MNER_DATA)",
)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "twitter2015").is_dir():
        pytest.skip(f"benchmark files not found at {DATA_DIR} (set MNER_DATA)")
    return DATA_DIR
