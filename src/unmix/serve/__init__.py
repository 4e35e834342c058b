"""Using a trained separator: `unmix separate` and `unmix mix` (the MLflow model they can load
is unmix.tracking.logged_model).

Kept free of imports: `unmix --help` should not wait for torch.
"""
