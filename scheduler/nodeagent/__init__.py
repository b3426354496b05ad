"""The node agent: discovers the GPU topology (discovery), publishes it on the Node (publisher),
and serves the kubelet device plugin that honours only signed assignments (plugin, claims).
"""
