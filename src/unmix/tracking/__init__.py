"""MLflow, from the stages' side: the run a stage logs to and the worker process that talks to
the store (tracker), the SQLite store made once (store), calls a store has not taken yet
(spool; courier, which batches them to the store; deliver: `python -m unmix.tracking.deliver`),
a set's run found by its tags (run_lookup), the pickle-free MLflow model a run logs
(logged_model, model_code), and the Model Registry's versions and `champion` alias (registry)."""
