"""The study dispatch: every kind has a runner, in the file named after it."""

import pytest

from groundtruth.studies import STUDIES, run_study
from groundtruth.study import STUDY_KINDS, StudyConfig


def test_every_study_kind_has_a_runner_and_every_runner_a_kind():
    assert sorted(STUDIES) == sorted(STUDY_KINDS)


@pytest.mark.parametrize("kind", STUDY_KINDS)
def test_each_study_kind_lives_in_the_file_named_after_it(kind):
    expected = "groundtruth.audit" if kind == "audit" else f"groundtruth.studies.{kind}"
    assert STUDIES[kind].__module__ == expected


def test_a_kind_without_a_runner_is_refused(tmp_path, monkeypatch):
    monkeypatch.delitem(STUDIES, "width_confound")
    with pytest.raises(ValueError, match="no runner for study kind 'width_confound'"):
        run_study(StudyConfig(name="x", kind="width_confound"), tmp_path)
