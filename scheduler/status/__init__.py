"""`gts status`: why a pod is pending, what holds a node's GPUs, and the smoke-test probe."""
