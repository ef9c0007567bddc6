"""Runyard's local stack runner (``make up``) and its programmatic form for end-to-end tests.

Names are imported lazily, so ``python -m runyard.devstack.mailsink`` starts fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runyard.devstack.services import SERVICES, ServiceDef
    from runyard.devstack.stack import Stack, StackError, free_port

__all__ = ["SERVICES", "ServiceDef", "Stack", "StackError", "free_port"]


def __getattr__(name: str) -> Any:
    if name in ("SERVICES", "ServiceDef"):
        from runyard.devstack import services

        return getattr(services, name)
    if name in ("Stack", "StackError", "free_port"):
        from runyard.devstack import stack

        return getattr(stack, name)
    raise AttributeError(name)
