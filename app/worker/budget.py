"""A first-in-first-out weighted semaphore over the worker's cores."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class FifoCoreBudget(Generic[K]):
    """Hands out millicores in arrival order: a job that does not fit waits, and so does
    everything queued behind it, so a big job is never starved by small ones."""

    def __init__(self, capacity_mcpu: int) -> None:
        self.capacity_mcpu = capacity_mcpu
        self.free_mcpu = capacity_mcpu
        self._waiting: deque[tuple[K, int]] = deque()
        self._withdrawn: Counter[K] = Counter()

    def weight_of(self, cores_mcpu: int) -> int:
        """What a job asking for ``cores_mcpu`` holds: never more than the whole worker."""
        return max(0, min(cores_mcpu, self.capacity_mcpu))

    def enqueue(self, key: K, weight_mcpu: int) -> None:
        """Queue ``key``; it is granted by ``pop_granted`` once everything before it was."""
        self._waiting.append((key, weight_mcpu))

    def withdraw(self, key: K) -> None:
        """Drop a key that is still queued (cancelled before it started)."""
        self._withdrawn[key] += 1

    def pop_granted(self) -> list[K]:
        """Take queued keys, in order, while the head of the queue fits."""
        granted: list[K] = []
        while self._waiting:
            key, weight_mcpu = self._waiting[0]
            if self._withdrawn[key]:
                self._waiting.popleft()
                self._withdrawn[key] -= 1
                if not self._withdrawn[key]:
                    del self._withdrawn[key]
                continue
            if weight_mcpu > self.free_mcpu:
                break
            self._waiting.popleft()
            self.free_mcpu -= weight_mcpu
            granted.append(key)
        return granted

    def release(self, weight_mcpu: int) -> None:
        """Give back what a finished job held."""
        self.free_mcpu = min(self.capacity_mcpu, self.free_mcpu + weight_mcpu)
