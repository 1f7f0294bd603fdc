"""What the study tests share: small data settings for the tiny world."""

import pytest


@pytest.fixture
def small_data() -> dict:
    """A `[data]` section small enough for the tiny world and a test's seconds."""
    return {"eval_samples": 512, "probe_tasks": 3, "probe_examples": 64, "probe_pool": 4096,
            "probe_min_rate": 0.05,
            "corpus": {"n_subjects": 6, "pairs_per_subject": 2, "story_length": [8, 16]}}
