"""The host's CPU as a benchmark run saw it. On a virtual machine the hypervisor may run other guests on our cores
(steal time): the run's latencies then grow with no cause in the code measured, so benchmarks print it beside them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PROC_STAT = Path("/proc/stat")


@dataclass(frozen=True)
class CpuTimes:
    steal: int  # clock ticks, all CPUs
    total: int

    @classmethod
    def now(cls) -> CpuTimes:
        """The aggregate `cpu` line of /proc/stat: user nice system idle iowait irq softirq steal (guest time is
        counted in user and nice already)."""
        fields = PROC_STAT.read_text().split("\n", 1)[0].split()
        ticks = [int(value) for value in fields[1:9]]
        return cls(steal=ticks[7], total=sum(ticks))

    def steal_pct_since(self, before: CpuTimes) -> float:
        """Percent of all CPU time between `before` and this that the hypervisor gave to others."""
        elapsed = self.total - before.total
        return 100.0 * (self.steal - before.steal) / elapsed if elapsed > 0 else 0.0
