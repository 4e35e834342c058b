"""Team mode: a local PostgreSQL cluster, the MLflow tracking server on it, sweeps on many machines."""
