"""Judging and running a trained separator: inference on mixtures and pictures, shared by
training's validation, evaluate and serving (inference), the scores (metrics), a set's
test scores beside the trivial baseline (scoring), and pictures of its reconstructions
(mosaic)."""
