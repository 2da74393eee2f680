"""Semantic change detection metrics: OA, mIoU, SeK, F_scd (chapter 06; used for validation in chapter 05).

Two modules, one concern each:

- `textscd_lib.metrics.scores` — the maths: the 7×7 confusion matrix over both dates (SECOND protocol,
  docs/facts.md#metrics), the scores and their NaN reasons, the from→to transition confusion and the 37-class
  SeK convention some toolboxes use, and the change-only scores of a binary method;
- `textscd_lib.metrics.folders` — prediction folders: the layouts other methods write (:data:`PRED_LAYOUTS`,
  binary change folders), matching them against the ground truth, reading the PNGs, scoring a folder.

Every name is re-exported here, so ``from textscd_lib.metrics import X`` works for either.
"""

from textscd_lib.data.second import CLASSES, NUM_CLASSES
from textscd_lib.metrics.folders import (
    BINARY_DESCRIPTION,
    BINARY_LAYOUT,
    LAYOUT_NAMES,
    PRED_LAYOUTS,
    find_layout,
    layout_description,
    match_predictions,
    read_change_mask,
    read_truth,
    score_folders,
)
from textscd_lib.metrics.scores import (
    METRIC_COLUMNS,
    NOT_APPLICABLE,
    NUM_CHANGE_TYPES,
    PARTIAL_POLICIES,
    SCDConfusion,
    TransitionConfusion,
    change_confusion,
    change_type_names,
    per_class_iou,
    scores_from_change_masks,
    scores_from_confusion,
    scores_from_transitions,
    to_numpy,
    transition_codes,
)

__all__ = [
    "BINARY_DESCRIPTION", "BINARY_LAYOUT", "CLASSES", "LAYOUT_NAMES", "METRIC_COLUMNS", "NOT_APPLICABLE",
    "NUM_CHANGE_TYPES", "NUM_CLASSES", "PARTIAL_POLICIES", "PRED_LAYOUTS", "SCDConfusion", "TransitionConfusion",
    "change_confusion", "change_type_names", "find_layout", "layout_description", "match_predictions",
    "per_class_iou", "read_change_mask", "read_truth", "score_folders", "scores_from_change_masks",
    "scores_from_confusion", "scores_from_transitions", "to_numpy", "transition_codes",
]
