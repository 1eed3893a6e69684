"""Runner subprocesses (one per launched model), their IPC, and the ModelManager that drives them."""

from __future__ import annotations

from .manager import ModelManager
from .planning import LaunchPlan
from .protocol import LoadSpec
from .records import ModelRecord

__all__ = ["LaunchPlan", "LoadSpec", "ModelManager", "ModelRecord"]
