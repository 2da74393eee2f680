"""Models, chapters 03-05: the Siamese ResNet34 of eq. (3)-(4), TGI of eq. (6)-(7), the decoder of eq. (8)
with its three heads (TextSCD and Baseline), and the losses of eq. (9)-(12). Tensors in, tensors out: no
captions, no files (import-linter forbids ``text`` and ``data`` here).
"""
