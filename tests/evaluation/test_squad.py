"""SQuAD v1.1 scoring follows the official evaluation logic (answers normalised, EM, token F1)."""

import pytest

from growlm.evaluation.squad import best_over_answers, exact_match, f1, first_line, normalize_answer


@pytest.mark.parametrize(
    ("text", "normalised"),
    [("The Eiffel Tower", "eiffel tower"),
     ("  a  cat,  an apple and THE dog!  ", "cat apple and dog"),
     ("Denver Broncos.", "denver broncos"),
     ("theatre", "theatre"),  # articles only as whole words
     ("1,000 km", "1000 km"),
     ("rock-'n'-roll", "rocknroll"),
     ("Anne's", "annes")],
)
def test_normalisation(text, normalised):
    assert normalize_answer(text) == normalised


@pytest.mark.parametrize(
    ("prediction", "truth", "em", "f1_expected"),
    [("Denver Broncos", "Denver Broncos", 1.0, 1.0),
     ("the Denver Broncos", "Denver Broncos", 1.0, 1.0),
     ("Broncos", "Denver Broncos", 0.0, 2 * (1.0 * 0.5) / 1.5),
     ("Denver Broncos won", "Denver Broncos", 0.0, 2 * (2 / 3 * 1.0) / (2 / 3 + 1.0)),
     ("Carolina Panthers", "Denver Broncos", 0.0, 0.0),
     ("", "Denver Broncos", 0.0, 0.0),
     ("Santa Clara, California", "Santa Clara", 0.0, 2 * (2 / 3) * 1.0 / (2 / 3 + 1.0)),
     # "a" is an article and goes: "b" against "b b" shares one token, precision 1, recall 1/2
     ("a a b", "a b b", 0.0, 2 * 1.0 * 0.5 / 1.5)],
)
def test_exact_match_and_f1(prediction, truth, em, f1_expected):
    assert exact_match(prediction, truth) == em
    assert f1(prediction, truth) == pytest.approx(f1_expected)


def test_repeated_tokens_count_once_each():
    # Counter intersection: "x x x" vs "x y": one shared token, precision 1/3, recall 1/2
    assert f1("x x x", "x y") == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))


def test_best_gold_answer_is_taken():
    answers = ["Santa Clara, California", "Levi's Stadium", "Levi's Stadium in the San Francisco Bay Area"]
    assert best_over_answers("Levi's Stadium", answers) == (1.0, 1.0)
    em, score = best_over_answers("the stadium", answers)
    assert em == 0.0 and score == pytest.approx(2 * 1.0 * 0.5 / 1.5)


def test_answer_is_the_first_line():
    assert first_line(" Denver Broncos\nQuestion: next") == "Denver Broncos"
