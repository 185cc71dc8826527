"""Timing and memory of repeated calls, methods interleaved, summarised by medians and IQRs.

Every method's call is timed in the same rounds: after `warmup` untimed rounds, each of
`rounds` rounds calls every method once (A B C, then B C A, ...: the order rotates so no method
always follows the same neighbour). A machine that slows down for a while slows every method
of the affected rounds, so ratios are taken pair by pair — per round, one method's time over
the reference's time in that same round — and summarised by their median and interquartile
range, never as a ratio of two medians.

Clocks: CUDA events on a GPU (the device's own time line, read after a synchronisation), the
monotonic `time.perf_counter` on a CPU. Memory: `torch.cuda.max_memory_allocated` on a GPU,
the process's peak resident set size (`resource.getrusage`) on a CPU; the peak is reset before
each call where the platform allows it (Linux: `/proc/self/clear_refs`), so each call's peak is
its own.
"""

from __future__ import annotations

import gc
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

MB = 2**20


@dataclass
class Summary:
    """Median and spread of repeated measurements (quartiles by linear interpolation)."""

    median: float
    q1: float
    q3: float
    min: float
    max: float
    n: int
    values: list[float] = field(default_factory=list)

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    def to_dict(self) -> dict:
        return {**asdict(self), "iqr": self.iqr}


def summarize(values: Sequence[float]) -> Summary:
    if not len(values):
        raise ValueError("summarize: no values")
    q1, median, q3 = np.percentile(np.asarray(values, dtype=float), [25, 50, 75])
    return Summary(
        median=float(median),
        q1=float(q1),
        q3=float(q3),
        min=float(min(values)),
        max=float(max(values)),
        n=len(values),
        values=[float(v) for v in values],
    )


def paired_ratios(values: Sequence[float], reference: Sequence[float]) -> list[float]:
    """Per round, `values[r] / reference[r]`: both measured in the same round r."""
    if len(values) != len(reference):
        raise ValueError(
            f"paired ratios need one reference per round: {len(values)} values, "
            f"{len(reference)} reference values"
        )
    return [v / r for v, r in zip(values, reference, strict=True)]


@dataclass
class PairedRatio:
    """A method against a reference, pair by pair: `time` = its time / the reference's (below 1:
    faster), `speed` = the reference's time / its time (= throughput ratio; above 1: faster)."""

    time: Summary
    speed: Summary

    def to_dict(self) -> dict:
        return {"time": self.time.to_dict(), "speed": self.speed.to_dict()}


def paired_ratio(seconds: Sequence[float], reference_seconds: Sequence[float]) -> PairedRatio:
    return PairedRatio(
        time=summarize(paired_ratios(seconds, reference_seconds)),
        speed=summarize(paired_ratios(reference_seconds, seconds)),
    )


# ---------------------------------------------------------------------------- clocks
class Clock:
    """Seconds one call takes: CUDA events on a GPU, perf_counter on a CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.name = "cuda-events" if self.cuda else "perf_counter"

    def time(self, fn: Callable[[], object]) -> float:
        if not self.cuda:
            start = time.perf_counter()
            fn()
            return time.perf_counter() - start
        torch.cuda.synchronize()  # nothing queued before the call is counted in it
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3


# ---------------------------------------------------------------------------- memory
_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATM = Path("/proc/self/statm")


def _current_rss() -> int | None:
    try:
        pages = int(_STATM.read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * resource.getpagesize()


def _peak_rss() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


class MemoryProbe:
    """Peak memory of one call and how much it rose above what was in use when it began."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.device = device
        self.name = "cuda_max_memory_allocated" if self.cuda else "process_peak_rss"
        self.resettable = True
        self._before: int | None = None

    def start(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._before = torch.cuda.memory_allocated(self.device)
            return
        try:
            # "5" resets the peak RSS (VmHWM) that getrusage reports (Linux ≥ 4.0).
            _CLEAR_REFS.write_text("5")
        except OSError:
            self.resettable = False  # the peak is then the process's lifetime peak
        self._before = _current_rss()

    def stop(self) -> tuple[int, int | None]:
        """(peak bytes during the call, peak − bytes in use at its start, when known)."""
        if self.cuda:
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            peak = _peak_rss()
        rise = None
        if self._before is not None and self.resettable:
            rise = max(0, peak - self._before)
        return peak, rise


# ---------------------------------------------------------------------------- rounds
@dataclass
class Call:
    """What one method does in a round: `setup` (untimed, e.g. emptying caches) then `run`."""

    run: Callable[[], object]
    setup: Callable[[], object] | None = None


@dataclass
class Measurements:
    """One method's timed calls, in round order."""

    seconds: list[float] = field(default_factory=list)
    peak_bytes: list[int] = field(default_factory=list)
    rise_bytes: list[int | None] = field(default_factory=list)

    def memory(self, probe: MemoryProbe) -> dict:
        rises = [r for r in self.rise_bytes if r is not None]
        return {
            "measure": probe.name,
            "peak_mb": round(max(self.peak_bytes) / MB, 3) if self.peak_bytes else None,
            "rise_mb": round(max(rises) / MB, 3) if rises else None,
        }


def rotated(labels: Sequence[str], round_index: int) -> list[str]:
    """The call order of a round: the labels rotated by the round's index."""
    k = round_index % len(labels) if labels else 0
    return list(labels[k:]) + list(labels[:k])


def interleaved_rounds(
    calls: dict[str, Call],
    rounds: int,
    warmup: int,
    clock: Clock,
    memory: MemoryProbe,
    progress: bool = False,
    desc: str = "bench",
) -> dict[str, Measurements]:
    """Warm-up rounds (untimed), then `rounds` timed rounds; every round calls each method once,
    in an order rotated by the round index."""
    labels = list(calls)
    out = {label: Measurements() for label in labels}
    # A collection inside a timed call would be charged to it, so one runs before each call;
    # freezing what exists now keeps those collections to the objects made since (a full one
    # over the loaded libraries took ~0.4 s per call, measured).
    gc.collect()
    gc.freeze()
    try:
        _rounds(calls, labels, out, rounds, warmup, clock, memory, progress, desc)
    finally:
        gc.unfreeze()
    return out


def _rounds(
    calls: dict[str, Call],
    labels: list[str],
    out: dict[str, Measurements],
    rounds: int,
    warmup: int,
    clock: Clock,
    memory: MemoryProbe,
    progress: bool,
    desc: str,
) -> None:
    bar = tqdm(
        total=(warmup + rounds) * len(labels),
        desc=desc,
        disable=not progress,
        mininterval=1,
        leave=False,
    )
    for r in range(warmup + rounds):
        for label in rotated(labels, r):
            call = calls[label]
            if call.setup is not None:
                call.setup()
            gc.collect()
            memory.start()
            seconds = clock.time(call.run)
            peak, rise = memory.stop()
            if r >= warmup:
                out[label].seconds.append(seconds)
                out[label].peak_bytes.append(peak)
                out[label].rise_bytes.append(rise)
            bar.update()
    bar.close()
