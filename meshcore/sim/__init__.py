"""Seeded discrete-event simulation of many SWIM cores (`World`), with safety checkers."""

from ._world import NetConfig, SafetyViolation, World

__all__ = ["World", "NetConfig", "SafetyViolation"]
