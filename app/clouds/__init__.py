"""Cloud drivers: `local` worker processes, Google Compute Engine, Azure."""
