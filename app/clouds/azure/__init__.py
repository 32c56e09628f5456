"""Azure VMs (azure-mgmt-compute, azure-identity); the SDK is imported only when first used."""

from app.clouds.azure.driver import AzureCloud
from app.clouds.azure.resources import AzureResources, ImageRef, VmInfo, VmSpec

__all__ = ["AzureCloud", "AzureResources", "ImageRef", "VmInfo", "VmSpec"]
