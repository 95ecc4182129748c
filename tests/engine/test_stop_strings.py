"""Stop-string matching across deltas: the stop text and anything after it is never emitted."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from tritium.core.engine.stop_strings import StopStringMatcher


def _run(stops, deltas):
    m = StopStringMatcher(stops)
    out = "".join(m.push(d) for d in deltas)
    return out + m.flush(), m.stopped


def test_stop_spanning_deltas_is_cut():
    assert _run(["STOP"], ["abc S", "T", "O", "Pxyz"]) == ("abc ", True)


def test_held_back_prefix_is_released_when_it_turns_out_not_to_be_a_stop():
    m = StopStringMatcher(["STOP"])
    assert m.push("abc ST") == "abc "
    assert m.push("x") == "STx"
    assert m.push("S") == ""
    assert m.flush() == "S"


def test_earliest_of_several_stops_wins():
    assert _run(["world", "lo"], ["hello world"]) == ("hel", True)


def test_no_stops_passes_through():
    m = StopStringMatcher([])
    assert m.push("STOP") == "STOP" and not m.stopped


@given(st.text(alphabet="abST", max_size=30), st.lists(st.integers(1, 5), max_size=10),
       st.sampled_from(["ST", "aSb", "TTT", "b"]))
def test_matches_the_one_shot_answer_for_any_split(text, cuts, stop):
    deltas, i = [], 0
    for c in cuts:
        deltas.append(text[i:i + c])
        i += c
    deltas.append(text[i:])
    hit = text.find(stop)
    expected = (text[:hit], True) if hit >= 0 else (text, False)
    assert _run([stop], deltas) == expected
