"""Using a trained separator: the pickle-free MLflow model, `unmix separate` and `unmix mix`.

Kept free of imports: the MLflow model ships this package as code, and `unmix --help`
should not wait for torch.
"""
