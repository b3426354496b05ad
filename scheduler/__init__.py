"""What runs in a cluster: the scoring core, the extender service, the cache, the node agent."""
