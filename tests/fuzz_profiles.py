"""Hypothesis settings of the fuzz and differential tests (test_differential.py, test_fuzz_readers.py).

Two profiles, chosen with the environment variable HYPOTHESIS_PROFILE (default "ci"):
  ci    derandomised (a fixed seed per test), a bounded number of examples: the normal test suite
  fuzz  random, many more examples (`make fuzz`)
Only the tests that ask for these settings use them; other hypothesis tests keep their own.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# examples per test in each profile, by kind of test
_EXAMPLES = {
    "ci": {"differential": 60, "dynamo": 4, "reader": 250},
    "fuzz": {"differential": 400, "dynamo": 60, "reader": 20000},
}


def profile_name() -> str:
    name = os.environ.get("HYPOTHESIS_PROFILE", "ci")
    return name if name in _EXAMPLES else "ci"


def fuzz_settings(kind: str) -> settings:
    """Settings for a test of `kind` ("differential", "dynamo" or "reader") under the current profile."""
    name = profile_name()
    return settings(
        max_examples=_EXAMPLES[name][kind],
        deadline=None,
        derandomize=name == "ci",
        database=None if name == "ci" else settings.default.database,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )
