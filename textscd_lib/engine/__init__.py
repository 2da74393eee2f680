"""Engine, chapter 05: the trainer (it only trains: data, captions and text features are given to it),
checkpoints (portable ``best.pt``, exact-resume ``last.pt``), batches, and predictions in the SECOND layout.
"""
