"""The local cloud: each "VM" is a worker agent child process."""

from app.clouds.local.driver import LocalCloud

__all__ = ["LocalCloud"]
