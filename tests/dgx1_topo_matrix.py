"""The DGX-1 V100 hybrid cube-mesh as `nvidia-smi topo -m` prints it (DGX-1 System Architecture
white paper, fig. 4): the expected answer, written out by hand, for the tests of the preset, of
discovery and of the device plugin."""

DGX1_TOPO_ROWS = [
    "X   NV1 NV1 NV2 NV2 SYS SYS SYS",
    "NV1 X   NV2 NV1 SYS NV2 SYS SYS",
    "NV1 NV2 X   NV2 SYS SYS NV1 SYS",
    "NV2 NV1 NV2 X   SYS SYS SYS NV1",
    "NV2 SYS SYS SYS X   NV1 NV1 NV2",
    "SYS NV2 SYS SYS NV1 X   NV2 NV1",
    "SYS SYS NV1 SYS NV1 NV2 X   NV2",
    "SYS SYS SYS NV1 NV2 NV1 NV2 X",
]
