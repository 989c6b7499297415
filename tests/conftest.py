"""Shared fixtures: offline environment, paths to the real data, tiny synthetic interaction data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from synthetic import make_clustered_interactions, write_atomic_inter

# Tests never touch the network: every hub client is told to stay offline, telemetry is off.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO_ROOT / ".." / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets beside the checkout; skips (only) where a fresh clone lacks them."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def clustered_dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small clustered interaction dataset as RecBole atomic files (read-only, shared by tests)."""
    return write_atomic_inter(tmp_path_factory.mktemp("data"), "clustered", make_clustered_interactions())


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models: one thread is faster than several fighting over a shared CPU (and deterministic)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
