"""Foundations every layer uses: atomic file writes (nothing half-written), where results and data live
(paths are given, never discovered), run folders and the record of offline substitutes, the device choice.
"""
