"""The batch/DAG interpreter: submission, readiness, completion, reruns, retries, logs."""
