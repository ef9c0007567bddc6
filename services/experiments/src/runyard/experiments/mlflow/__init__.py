"""MLflow's REST tracking API on Runyard's own model (``/api/2.0/mlflow/``).

MLflow experiment -> project, run -> experiment, metric step -> epoch, params -> (write-once)
hyperparameters, tags -> key/value tags, run status -> lifecycle. Errors have MLflow's shape
(``errors``). What maps to what, and what is not supported: ``docs/mlflow.md``.
"""
