"""The emulator fixtures for every storage test module (defined, with their scopes, in
tests/storage/emulators.py)."""

from tests.storage.emulators import azurite, gcs_emulator

__all__ = ["azurite", "gcs_emulator"]
