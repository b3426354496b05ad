"""Generated kubelet device plugin API v1beta1 (from deviceplugin.proto)."""
