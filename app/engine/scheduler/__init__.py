"""The job scheduler: fair share, placement, the autoscaler's sizing, and why a job waits."""
