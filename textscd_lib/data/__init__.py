"""Data, chapter 01: the SECOND format and colours, validation (every bad file named), preparation and the
4:1 split, the seeded mini-SECOND generator with its scene log, the decoded uint8 cache and the torch Dataset.
"""
