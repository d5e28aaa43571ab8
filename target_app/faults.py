"""Fault state: what is currently broken, shared by every request thread.

All state sits behind one lock. Each spike is its own *window* (value + deadline), so
overlapping spikes never overwrite each other: the effective error ratio or delay is the
maximum over the windows still open, and each window simply expires on its own.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import dataclass, field

__all__ = ["CPU_CHUNK_BYTES", "FaultState", "Window"]

# sha256 over a 1 MiB buffer releases the GIL (CPython does so above 2 KiB), so N burner
# threads really use N cores inside this one process and process_cpu_seconds_total rises
# by about N core-seconds per second.
CPU_CHUNK_BYTES = 1 << 20
MIB = 1 << 20
# The leak grows in small steps so mb_per_s is smooth at the scrape resolution.
LEAK_TICK_S = 0.1


@dataclass
class Window:
    value: float
    until: float  # time.monotonic() deadline


@dataclass
class FaultState:
    lock: threading.Lock = field(default_factory=threading.Lock)
    error_windows: list[Window] = field(default_factory=list)
    latency_windows: list[Window] = field(default_factory=list)
    # Set once by the hang fault and never cleared: a hung process does not heal itself.
    hung: threading.Event = field(default_factory=threading.Event)
    # Set by stop-all; burners and leakers started before it watch their own event.
    _generation_stop: threading.Event = field(default_factory=threading.Event)
    leaked: list[bytes] = field(default_factory=list)
    cpu_threads: int = 0
    leak_threads: int = 0

    # --- windows -------------------------------------------------------------------
    def _active(self, windows: list[Window]) -> float:
        now = time.monotonic()
        windows[:] = [w for w in windows if w.until > now]
        return max((w.value for w in windows), default=0.0)

    def add_error_window(self, ratio: float, duration_s: float) -> None:
        with self.lock:
            self.error_windows.append(Window(ratio, time.monotonic() + duration_s))

    def add_latency_window(self, seconds: float, duration_s: float) -> None:
        with self.lock:
            self.latency_windows.append(Window(seconds, time.monotonic() + duration_s))

    def error_ratio(self) -> float:
        with self.lock:
            return self._active(self.error_windows)

    def extra_latency(self) -> float:
        with self.lock:
            return self._active(self.latency_windows)

    def leaked_bytes(self) -> int:
        with self.lock:
            return sum(len(b) for b in self.leaked)

    # --- background faults ------------------------------------------------------------
    def _stop_event(self) -> threading.Event:
        with self.lock:
            return self._generation_stop

    def start_cpu_burn(self, duration_s: float, threads: int) -> None:
        stop = self._stop_event()
        deadline = time.monotonic() + duration_s

        def burn() -> None:
            buf = os.urandom(CPU_CHUNK_BYTES)
            try:
                while not stop.is_set() and time.monotonic() < deadline:
                    hashlib.sha256(buf).digest()
            finally:
                with self.lock:
                    self.cpu_threads -= 1

        with self.lock:
            self.cpu_threads += threads
        for i in range(threads):
            threading.Thread(target=burn, name=f"fault-cpu-{i}", daemon=True).start()

    def start_memory_leak(self, mb_per_s: float, duration_s: float, max_mb: float) -> None:
        """Grow by mb_per_s until duration_s passes or max_mb is held; keep it until stop-all."""
        stop = self._stop_event()
        deadline = time.monotonic() + duration_s
        step = max(1, int(mb_per_s * MIB * LEAK_TICK_S))
        cap = int(max_mb * MIB)

        def leak() -> None:
            try:
                while not stop.is_set() and time.monotonic() < deadline:
                    with self.lock:
                        held = sum(len(b) for b in self.leaked)
                        # Checked under the lock: a stop-all that cleared the list while we
                        # waited for it must not be followed by one more chunk.
                        if held >= cap or stop.is_set():
                            return
                        # b"x" * n writes every page, so RSS really grows (calloc'd
                        # zero pages would not count until touched).
                        self.leaked.append(b"x" * min(step, cap - held))
                    stop.wait(LEAK_TICK_S)
            finally:
                with self.lock:
                    self.leak_threads -= 1

        with self.lock:
            self.leak_threads += 1
        threading.Thread(target=leak, name="fault-leak", daemon=True).start()

    def stop_all(self) -> None:
        """End every spike, burner and leak and free leaked memory. A hang cannot be undone."""
        with self.lock:
            self.error_windows.clear()
            self.latency_windows.clear()
            self.leaked.clear()
            self._generation_stop.set()
            self._generation_stop = threading.Event()

    def snapshot(self) -> dict[str, float | int | bool]:
        with self.lock:
            return {
                "error_ratio": self._active(self.error_windows),
                "extra_latency_s": self._active(self.latency_windows),
                "cpu_threads": self.cpu_threads,
                "leak_threads": self.leak_threads,
                "leaked_mb": round(sum(len(b) for b in self.leaked) / MIB, 1),
                "hung": self.hung.is_set(),
            }
