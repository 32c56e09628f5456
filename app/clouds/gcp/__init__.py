"""Google Compute Engine: the resource manager (the SDK is imported lazily inside it)."""

from __future__ import annotations

from app.clouds.gcp.driver import GceCloud
from app.clouds.gcp.resources import DEFAULT_IMAGE, GceResources, VmInfo, VmSpec

__all__ = ["DEFAULT_IMAGE", "GceCloud", "GceResources", "VmInfo", "VmSpec"]
