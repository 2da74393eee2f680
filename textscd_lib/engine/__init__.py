"""Engine, chapter 05: the trainer (it only trains: data, captions and text features are given to it), its
configuration with the option metadata the command line is built from (config), checkpoints (portable
``best.pt``, exact-resume ``last.pt``), and around it, one module per concern: augmentation (the reference
protocol's flips and rotations), sharding (pairs per rank under torchrun), batches (resizing, normalisation,
batch assembly), inference (the ONE function that produces a model's maps: validation, ``textscd predict``,
export and the chapters call it), evaluation (validation scores), export (maps as SECOND-layout PNGs),
predictions (a model's maps in memory for the chapters), stages (text features, predictions to a folder) and
cudnn (a context that sets and restores ``cudnn.benchmark``).
"""
