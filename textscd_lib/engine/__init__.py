"""Engine, chapter 05: the trainer (it only trains: data, captions and text features are given to it), its
configuration with the option metadata the command line is built from (config), the stages around it (stages:
text features, predictions in the SECOND layout), checkpoints (portable ``best.pt``, exact-resume ``last.pt``),
batches, and a model's maps in memory (predictions).
"""
