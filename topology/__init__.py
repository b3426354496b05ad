"""Pure GPU topology library: how GPUs in a node are linked and which GPUs to hand a pod.

Imports nothing from the rest of the project; no I/O except in the parsers' callers.
"""
