"""Names that several parts of unmix share, each defined here once. A leaf: it imports nothing,
so the lightest module (the `unmix` command's argument parser) can read it."""

# The MLflow tag that names a run's parameter set: train sets it, evaluate, render-figures,
# the registry and sweeps find runs by it.
SET_TAG = "unmix.set"

# The mixing rules, by name; unmix.model.mixing.MIXES maps each to its function (torch).
MIX_NAMES = ("quarter_sum", "mean", "half_difference")

# The type of the MLflow model a training run logs (unmix.tracking.logged_model): the only
# models the registry takes.
MODEL_TYPE = "unmix-separator"
