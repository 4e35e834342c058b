"""Training a separator: the loop (loop), what an epoch measured and the state that
continues it (state), resume checkpoints on disk (resume), several processes (distributed),
the losses (losses), faults injected by tests (faults), and one parameter set's training
wired to its MLflow run (sets)."""
