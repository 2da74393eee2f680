"""Which classes a caption names, and the errors of the transitions it names (textscd_lib.analysis.caption_errors,
chapter 06; the vocabulary serves chapters 02 and 07 too)."""

from __future__ import annotations

import pytest
from error_strip import error_strip

from textscd_lib.analysis import caption_errors as CE


@pytest.mark.parametrize("caption, expected", [
    ("Several houses were built on the former lawn.", {"building", "low vegetation"}),
    ("A sports field replaced the bare soil in the top left.", {"playground", "ground"}),
    ("The grass field in the centre is now a pond.", {"low vegetation", "water"}),
    ("Trees were cut down and the vegetation cleared.", {"tree", "low vegetation"}),
    ("No visible change.", set()),
    ("", set()),
])
def test_caption_mentions_classes_through_synonyms(caption, expected):
    assert CE.classes_mentioned(caption) == expected


def test_transition_mention_distinguishes_both_one_and_neither():
    cap = "Low vegetation in the top left has been replaced by buildings."
    assert CE.transition_mention(cap, "low vegetation", "building") == "both"
    assert CE.transition_mention(cap, "tree", "building") == "to only"
    assert CE.transition_mention(cap, "low vegetation", "water") == "from only"
    assert CE.transition_mention(cap, "tree", "water") == "neither"
    # whole words only
    assert CE.classes_mentioned("rebuildings") == set()


def test_transition_errors_rates_and_mentions():
    p1, p2, l1, l2 = error_strip()
    preds, labels = {"t": (p1, p2)}, {"t": (l1, l2)}
    tab = CE.transition_errors(["t"], preds, labels, {"t": "grass replaced by houses"})
    lvb = tab[tab.transition == "low vegetation→building"].iloc[0]
    assert lvb.pixels == 3 and lvb.mention == "both"
    assert lvb.error == pytest.approx(2 / 3)
    assert lvb.miss == pytest.approx(1 / 3) and lvb["wrong class"] == pytest.approx(1 / 3)
    trg = tab[tab.transition == "tree→ground"].iloc[0]
    assert trg.mention == "neither" and trg.error == 1.0
    summary = CE.error_summary(tab, "mention")
    assert summary.loc["both", "pixels"] == 3
    assert summary["share of errors"].sum() == pytest.approx(1.0)


def test_negated_changes_do_not_count_as_mentions():
    assert CE.classes_mentioned("No noticeable changes in buildings, roads or vegetation can be seen.") == set()
    assert CE.classes_mentioned("There are no obvious changes between the two images.") == set()
    assert CE.classes_mentioned("No change in the buildings, but the lawn became bare soil.") == {
        "low vegetation", "ground"}
