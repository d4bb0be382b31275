"""Training of the hybrid liver / lesion cascade (``medseg train liver-lesion``).

Modules: :mod:`.data` (dataset discovery, preprocessing shared with inference, 2.5D patch
sampling with MONAI transforms) and :mod:`.liver` (the training loop, validation Dice,
checkpoints). Both import torch/MONAI; import them lazily.
"""
