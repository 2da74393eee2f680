"""Text, chapters 02-03: the caption store and the paper's prompt, Gemini and the offline caption sources,
tokens (L = 50), the frozen text encoders of eq. (5) and the text-feature file the trainer reads.
"""
