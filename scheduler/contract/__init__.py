"""The types every part of the scheduler shares: units and bounds, a pod's request, an
assignment, a node's capacity.

One idea per module (units, request, assignment, node); import from those. This package
imports nothing heavy (no numpy), so the node agent can use it without the placement code.
"""
