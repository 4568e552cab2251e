"""Layer maps: every kind, non-divisible counts, and invalid maps."""

import pytest

from tinybert_edge.errors import ConfigError
from tinybert_edge.mapping import LayerMap


def test_uniform_paper_default_4_on_12():
    assert LayerMap.uniform(4, 12).teacher_for_student == (3, 6, 9, 12)


def test_uniform_non_divisible_4_on_6():
    lm = LayerMap.uniform(4, 6)
    assert lm.teacher_for_student == (1, 3, 4, 6)
    assert lm.pairs() == [(0, 0), (1, 1), (2, 3), (3, 4), (4, 6)]


def test_top_bottom_explicit():
    assert LayerMap.top(4, 12).teacher_for_student == (9, 10, 11, 12)
    assert LayerMap.bottom(4, 12).teacher_for_student == (1, 2, 3, 4)
    assert LayerMap.parse("2,2,5,6", 4, 6).teacher_for_student == (2, 2, 5, 6)
    assert LayerMap.parse("top", 2, 6).kind == "top"


def test_round_trip_through_dict():
    lm = LayerMap.uniform(4, 6)
    assert LayerMap.from_dict(lm.to_dict()) == lm


@pytest.mark.parametrize("spec, match", [("1,2,3,7", "outside 1..6"), ("0,1,2,3", "outside"), ("1,2,3", "exactly one"),
                                         ("a,b", "comma-separated"), ("middle", "comma-separated")])
def test_invalid_explicit_maps(spec, match):
    with pytest.raises(ConfigError, match=match):
        LayerMap.parse(spec, 4, 6)


def test_more_student_than_teacher_layers_needs_explicit_map():
    with pytest.raises(ConfigError, match="explicit"):
        LayerMap.uniform(8, 6)
    assert LayerMap.parse("1,1,2,2,3,3,4,4", 8, 4).teacher_for_student[-1] == 4
