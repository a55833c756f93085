"""Prediction: roofline op times, communication, parallel layouts, MFU/HFU, time to train, serving, plans.

prediction.py  predict_step, time_to_train, devices_for_deadline, inference_latency, mfu_from_throughput
roofline.py    per-operator roofline time from the trace (efficiency factors, or measured op-class curves)
step.py        one step under a parallel layout: compute, memory, overhead, communication, bubble
comm.py        collective volumes: ring all-reduce, ZeRO 1-3, ZeRO++, tensor/pipeline/expert parallelism
inference.py   prefill and per-token decode
planner.py     enumerate and rank layouts that fit (the memory model)
efficiency.py  the efficiency factors (data/efficiency.toml, user files, --efficiency)
opcurves.py    per-op-class rate curves of a calibrated machine (for --hardware this)
shape.py       from a workload and its trace to the step model's inputs
"""
