"""Shared test setup: one instance of each Caffe runtime for the whole session (the pycaffe worker starts once)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def caffe_runtimes():
    """The installed Caffe runtimes, shared by every test of the session and closed at its end."""
    import caffe_runtimes as cr
    from onnx_testing import runtimes_here

    yield runtimes_here()
    cr._close_all()


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium driven over the DevTools pipe (tests/chromium.py), shared by the session. Skipped
    where Debian's chromium is not installed, except in CI (env CI set), where that is a failure."""
    import os

    import chromium

    binary = chromium.find_chromium()
    if binary is None:
        why = "Chromium is not installed (apt-get install chromium; `make install` does it)"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {why}")
        pytest.skip(why)
    with chromium.Chromium(binary) as b:
        yield b
