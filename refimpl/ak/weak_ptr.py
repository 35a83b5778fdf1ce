"""Weakable and WeakPtr: a pointer that learns when its object is destroyed (AK/Weakable.h,
AK/WeakPtr.h).

A Weakable object hands out WeakPtrs that all share one *link* to it. Destroying the object
revokes the link (C++: `~Weakable()` calls `revoke_weak_ptrs()`), and from then on every WeakPtr
to it is null: reading one gives None instead of whatever the freed memory holds now. A raw
pointer has no such link; lesson 05 shows the difference on the region lookup cache.

In C++ the destructor revokes the link by itself. Kernel objects here are destroyed by an
explicit `destroy()` (their memory is simulated kmalloc memory), so that method must call
`revoke_weak_ptrs()`.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class WeakLink(Generic[T]):
    """What every WeakPtr to one object shares; revoking it nulls them all."""

    def __init__(self, target: T) -> None:
        self._target: T | None = target

    def target(self) -> T | None:
        return self._target

    def revoke(self) -> None:
        self._target = None


class WeakPtr(Generic[T]):
    """Null, or a pointer that becomes null when its object is destroyed."""

    def __init__(self, link: WeakLink[T] | None = None) -> None:
        self._link = link

    def unsafe_ptr(self) -> T | None:
        """The object, or None once it was destroyed (the C++ name warns that nothing keeps
        the object alive while you use it)."""
        return self._link.target() if self._link is not None else None

    def __bool__(self) -> bool:
        return self.unsafe_ptr() is not None

    def __repr__(self) -> str:
        return f"WeakPtr({self.unsafe_ptr()!r})"


class Weakable:
    """Mixin for objects WeakPtrs may point to. The link is made on the first request; once it
    is revoked, every WeakPtr the object hands out is null."""

    _weak_link: WeakLink | None = None

    def make_weak_ptr(self) -> WeakPtr:
        if self._weak_link is None:
            self._weak_link = WeakLink(self)
        return WeakPtr(self._weak_link)

    def revoke_weak_ptrs(self) -> None:
        """Null every WeakPtr to this object, made before or after (call it when the object is
        destroyed)."""
        if self._weak_link is None:
            self._weak_link = WeakLink(self)
        self._weak_link.revoke()
