"""A 1×6 prediction/label strip with one pixel per error category (shared by the analysis tests)."""

from __future__ import annotations

import numpy as np

W, G, LV, TR, B = 1, 2, 3, 4, 5  # water, ground, low vegetation, tree, building


def error_strip():
    """(pred1, pred2, label1, label2): one pixel per error category plus a second wrong-class case
    (change on one date only)."""
    l1 = np.array([[0, LV, 0, LV, LV, TR]])
    l2 = np.array([[0, B, 0, B, B, G]])
    p1 = np.array([[0, LV, LV, 0, LV, TR]])
    p2 = np.array([[0, B, B, 0, TR, 0]])
    return p1, p2, l1, l2
