"""MLflow, from the stages' side: the run a stage logs to and the worker process that talks to
the store (tracker), the SQLite store made once (store), calls a store has not taken yet
(spool, delivery, deliver: `python -m unmix.tracking.deliver`), a set's run found by its
tags (run_lookup), and the Model Registry's versions and `champion` alias (registry)."""
