"""Shared test fixtures. Real third-party files live in ../shared/fixtures beside the checkout;
tests that need them skip (with the reason) when that folder is absent."""
from pathlib import Path

import pytest

from reprolib import data, synth

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def fixtures() -> Path:
    """Path to ../shared/fixtures, or skip."""
    if not FIXTURES.is_dir():
        pytest.skip(f"real fixtures not found at {FIXTURES} (they live beside the checkout, not in it)")
    return FIXTURES


@pytest.fixture(autouse=True)
def _isolated_data_cache(tmp_path_factory, monkeypatch):
    """Never write into the user's data cache or download anything during tests."""
    monkeypatch.setenv("REPROLIB_DATA", str(tmp_path_factory.getbasetemp() / "reprolib-data"))
    monkeypatch.setenv("REPROLIB_OFFLINE", "1")


@pytest.fixture(scope="module")
def sid_root(tmp_path_factory):
    """A tiny SID-layout data set (real DNGs): 2 train, 1 test, 1 val scenes, with burst 01."""
    root = tmp_path_factory.mktemp("sid-tiny")
    synth.write_sid_dataset(root, seed=3, n_train=2, n_test=1, n_val=1, height=48, width=64)
    return root


@pytest.fixture(scope="module")
def cache(sid_root, tmp_path_factory):
    """The :class:`reprolib.data.DecodedCache` of ``sid_root``, in a temporary folder."""
    return data.DecodedCache(sid_root, folder=tmp_path_factory.mktemp("decoded"))
