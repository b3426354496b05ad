"""Units the scheduler counts in, and the bounds past which a quantity is refused."""

from __future__ import annotations

MILLI_PER_GPU = 1000
# Beyond these a quantity is a typo or an attack, not a workload.
MAX_GPUS_PER_POD = 64
MAX_CPU_MILLI = 10_000_000
MAX_MEMORY_MIB = 1 << 30
# Members of one gang: above the largest training jobs run on Kubernetes (its tested limit
# is 5,000 nodes), small enough that planning one stays a bounded piece of work.
MAX_GANG = 10_000
