"""unmix: separate two superimposed images, as a reproducible DVC + MLflow pipeline."""

__version__ = "0.1.0"
