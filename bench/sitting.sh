#!/bin/bash
# Every performance table of the README, in one sitting, in the README's order:
#   bash bench/sitting.sh [OUTDIR]        (from the repository root, after the README's set-up)
# Each command's output goes to OUTDIR/<name>.txt, with the load average before and after in
# OUTDIR/log. Run it on a quiet machine: nothing else running. About 45 minutes on 2 cores.
set -u
out=${1:-sitting-$(date -u +%Y%m%dT%H%M)}
mkdir -p "$out"
py=${PYTHON:-.venv/bin/python}
load() { cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || uptime; }
# Seconds a fixed pure-Python loop takes now: the load average does not show a host's other
# tenants, this does (on the 2-core machine one loop took 0.42 s, then 0.85 s minutes later,
# at a load average under 1).
probe() { $py -c 'import time; t=time.perf_counter(); sum(range(10**7)); print(f"probe {time.perf_counter()-t:.3f} s")'; }
step() {
  local name=$1; shift
  echo "== $name $(date -u +%T) load $(load), $(probe): $*" | tee -a "$out/log"
  "$@" > "$out/$name.txt" 2>&1
  local rc=$?
  echo "   done $(date -u +%T) load $(load), $(probe) rc=$rc" | tee -a "$out/log"
}
step tables $py -m bench.topology_tables
for i in 1 2 3; do step policy$i $py -m bench.policy_perf --json; done
step extender $py -m bench.extender_load --nodes 1000,5000
step extender_best $py -m bench.extender_load --nodes 1000,5000 --object-pods 0 --best-node-only
step extender_best_fixed $py -m bench.extender_load --nodes 1000,5000 --object-pods 0 \
  --best-node-only --order fixed
step extender_20k $py -m bench.extender_load --nodes 20000 --pods 100 --object-pods 0 --binds 100
step extender_20k_best $py -m bench.extender_load --nodes 20000 --pods 100 --object-pods 0 \
  --binds 100 --best-node-only
step e2e_100 $py -m bench.e2e --sizes 100/400 --repeats 3
step e2e_100_prioritize $py -m bench.e2e --sizes 100/400 --repeats 3 --serve best-node-only=false
step e2e_100_http1 $py -m bench.e2e --sizes 100/400 --repeats 3 --serve http2=false
step e2e_1000 $py -m bench.e2e --sizes 1000/2000 --repeats 3
step e2e_1000_adaptive $py -m bench.e2e --sizes 1000/2000 --repeats 3 \
  --scheduler percentageOfNodesToScore=0
# The floor: the same runs with an extender that does nothing (bench.null_extender).
step e2e_100_null $py -m bench.e2e --sizes 100/400 --repeats 3 --extender null
step e2e_1000_null $py -m bench.e2e --sizes 1000/2000 --repeats 3 --extender null
# Where each kube-scheduler's CPU goes (its CPU profiles; runs of their own, so that the
# sampling does not touch the timed runs above).
step e2e_100_profile $py -m bench.e2e --sizes 100/400 --repeats 3 --profile-scheduler 8
step e2e_1000_profile $py -m bench.e2e --sizes 1000/2000 --repeats 1 --profile-scheduler 50
step e2e_5000 $py -m bench.e2e --sizes 5000/5000 --repeats 1
step e2e_5000_adaptive $py -m bench.e2e --sizes 5000/5000 --repeats 1 \
  --scheduler percentageOfNodesToScore=0
step node_burst $py -m bench.node_burst
step pod_event_burst $py -m bench.pod_event_burst
echo "== end $(date -u +%T) load $(load)" | tee -a "$out/log"
