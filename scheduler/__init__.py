"""What runs in a cluster: the scoring core (policy), the extender service, the cache, the node agent."""
