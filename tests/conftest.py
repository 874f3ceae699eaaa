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
