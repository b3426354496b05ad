"""Our deviceplugin.proto against kubelet's v1beta1 API: package, services, field numbers.

The expected table is typed from kubelet's api.proto (see ../shared/reference/deviceplugin-api.md);
a renumbered or retyped field would still compile but break the wire with kubelet.
"""

from __future__ import annotations

from google.protobuf.descriptor import FieldDescriptor as F

from scheduler.nodeagent.proto import deviceplugin_pb2 as pb

S, B, I64, I32, M = F.TYPE_STRING, F.TYPE_BOOL, F.TYPE_INT64, F.TYPE_INT32, F.TYPE_MESSAGE
REP = True

# message -> {field: (number, type, repeated)}
EXPECTED: dict[str, dict[str, tuple[int, int, bool]]] = {
    "DevicePluginOptions": {"pre_start_required": (1, B, False),
                            "get_preferred_allocation_available": (2, B, False)},
    "RegisterRequest": {"version": (1, S, False), "endpoint": (2, S, False),
                        "resource_name": (3, S, False), "options": (4, M, False)},
    "Empty": {},
    "ListAndWatchResponse": {"devices": (1, M, REP)},
    "Device": {"ID": (1, S, False), "health": (2, S, False), "topology": (3, M, False)},
    "TopologyInfo": {"nodes": (1, M, REP)},
    "NUMANode": {"ID": (1, I64, False)},
    "PreferredAllocationRequest": {"container_requests": (1, M, REP)},
    "ContainerPreferredAllocationRequest": {"available_deviceIDs": (1, S, REP),
                                            "must_include_deviceIDs": (2, S, REP),
                                            "allocation_size": (3, I32, False)},
    "PreferredAllocationResponse": {"container_responses": (1, M, REP)},
    "ContainerPreferredAllocationResponse": {"deviceIDs": (1, S, REP)},
    "AllocateRequest": {"container_requests": (1, M, REP)},
    "ContainerAllocateRequest": {"devices_ids": (1, S, REP)},
    "AllocateResponse": {"container_responses": (1, M, REP)},
    "ContainerAllocateResponse": {"envs": (1, M, REP), "mounts": (2, M, REP),
                                  "devices": (3, M, REP), "annotations": (4, M, REP),
                                  "cdi_devices": (5, M, REP)},
    "Mount": {"container_path": (1, S, False), "host_path": (2, S, False),
              "read_only": (3, B, False)},
    "DeviceSpec": {"container_path": (1, S, False), "host_path": (2, S, False),
                   "permissions": (3, S, False)},
    "CDIDevice": {"name": (1, S, False)},
    "PreStartContainerRequest": {"devices_ids": (1, S, REP)},
    "PreStartContainerResponse": {},
}  # fmt: skip


def test_package_and_messages_match_kubelet() -> None:
    assert pb.DESCRIPTOR.package == "v1beta1"
    assert set(pb.DESCRIPTOR.message_types_by_name) == set(EXPECTED)
    for name, fields in EXPECTED.items():
        desc = pb.DESCRIPTOR.message_types_by_name[name]
        got = {f.name: (f.number, f.type, f.is_repeated) for f in desc.fields}
        assert got == fields, name


def test_maps_are_string_to_string() -> None:
    desc = pb.DESCRIPTOR.message_types_by_name["ContainerAllocateResponse"]
    for name in ("envs", "annotations"):
        entry = desc.fields_by_name[name].message_type
        assert entry.GetOptions().map_entry
        assert [(f.name, f.type) for f in entry.fields] == [("key", S), ("value", S)]


def test_services_and_method_paths() -> None:
    services = pb.DESCRIPTOR.services_by_name
    assert set(services) == {"Registration", "DevicePlugin"}
    reg = services["Registration"].methods_by_name["Register"]
    assert (reg.input_type.name, reg.output_type.name) == ("RegisterRequest", "Empty")
    dp = services["DevicePlugin"]
    want = {
        "GetDevicePluginOptions": ("Empty", "DevicePluginOptions", False),
        "ListAndWatch": ("Empty", "ListAndWatchResponse", True),
        "GetPreferredAllocation": ("PreferredAllocationRequest", "PreferredAllocationResponse",
                                   False),
        "Allocate": ("AllocateRequest", "AllocateResponse", False),
        "PreStartContainer": ("PreStartContainerRequest", "PreStartContainerResponse", False),
    }  # fmt: skip
    got = {m.name: (m.input_type.name, m.output_type.name, m.server_streaming)
           for m in dp.methods}  # fmt: skip
    assert got == want
    assert dp.full_name == "v1beta1.DevicePlugin"  # gRPC path /v1beta1.DevicePlugin/<method>
