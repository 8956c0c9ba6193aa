"""Self-supervised training of the backbone: the DINOv2 recipe (DINO + iBOT + KoLeo with an EMA
teacher and multi-crop) and a copy-detection fine-tuning objective."""
