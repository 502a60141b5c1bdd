"""The NTRENet model and its head blocks."""
from .ntrenet import NTRENet, NTRENetOutput, SupportFeatures

__all__ = ["NTRENet", "NTRENetOutput", "SupportFeatures"]
