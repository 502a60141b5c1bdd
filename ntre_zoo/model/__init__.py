"""The NTRENet model and its head blocks."""
from .ntrenet import NTRENet, NTRENetOutput, QueryFeatures, SupportFeatures

__all__ = ["NTRENet", "NTRENetOutput", "QueryFeatures", "SupportFeatures"]
