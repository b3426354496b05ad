"""What runs offline: the simulator, workloads, baselines, metrics, reports and perf benchmarks."""
