"""Shared test fixtures. Real third-party files live in ../shared/fixtures beside the checkout;
tests that need them skip (with the reason) when that folder is absent."""
from pathlib import Path

import pytest

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
