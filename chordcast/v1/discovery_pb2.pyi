from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DiscoveryMessage(_message.Message):
    __slots__ = ("kind", "address", "node_id", "id_bits", "ring_size", "in_ring", "timestamp_ms", "nonce")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[DiscoveryMessage.Kind]
        PROBE: _ClassVar[DiscoveryMessage.Kind]
        ANSWER: _ClassVar[DiscoveryMessage.Kind]
        QUERY: _ClassVar[DiscoveryMessage.Kind]
    KIND_UNSPECIFIED: DiscoveryMessage.Kind
    PROBE: DiscoveryMessage.Kind
    ANSWER: DiscoveryMessage.Kind
    QUERY: DiscoveryMessage.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ID_BITS_FIELD_NUMBER: _ClassVar[int]
    RING_SIZE_FIELD_NUMBER: _ClassVar[int]
    IN_RING_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    kind: DiscoveryMessage.Kind
    address: str
    node_id: bytes
    id_bits: int
    ring_size: int
    in_ring: bool
    timestamp_ms: int
    nonce: bytes
    def __init__(self, kind: _Optional[_Union[DiscoveryMessage.Kind, str]] = ..., address: _Optional[str] = ..., node_id: _Optional[bytes] = ..., id_bits: _Optional[int] = ..., ring_size: _Optional[int] = ..., in_ring: _Optional[bool] = ..., timestamp_ms: _Optional[int] = ..., nonce: _Optional[bytes] = ...) -> None: ...
