"""The local cloud: each "VM" is a worker agent child process."""

from app.clouds.local.driver import LocalCloud, SpareWorker, discard_spare, start_spare

__all__ = ["LocalCloud", "SpareWorker", "discard_spare", "start_spare"]
