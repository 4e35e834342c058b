"""Images in: generated shapes or a real source (shapes, sources), the raw image sets saved
and loaded (imageset, raw), and the seeded train/valid/test subsets with their fixed pairs
(subset). Nothing here imports torch."""
