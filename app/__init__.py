"""LabBatch: run job DAGs on a fair-shared pool of workers and watch them live."""

__version__ = "0.1.0"
