"""Measurement on real hardware: typed results, never Reports (the verbs build those).

* :mod:`.bench` — run a workload for real, timed until its median is stable (``run_bench``);
* :mod:`.track` — the Tracker behind ``mlfootprint.track`` for your own loop;
* :mod:`.distributed` — per-rank records of torchrun jobs, gathered by rank 0 or from files;
* :mod:`.energy` — energy meters (NVML, RAPL, modeled), one interface;
* :mod:`.memory`, :mod:`.peak` — peak memory of real steps (CUDA allocator, torch.profiler events);
* :mod:`.calibrate`, :mod:`.opcal` — what this machine achieves (``mlfootprint hardware calibrate``);
* :mod:`.reference` — what measurements are compared against (the device's peak, the predictions).
"""
