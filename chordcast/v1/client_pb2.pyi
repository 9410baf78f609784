from chordcast.v1 import chord_pb2 as _chord_pb2
from chordcast.v1 import link_pb2 as _link_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NodeInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NodeInfoReply(_message.Message):
    __slots__ = ("node", "predecessor", "successors", "fingers", "keys", "replicas", "id_bits", "rpc_p99_ms")
    NODE_FIELD_NUMBER: _ClassVar[int]
    PREDECESSOR_FIELD_NUMBER: _ClassVar[int]
    SUCCESSORS_FIELD_NUMBER: _ClassVar[int]
    FINGERS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    ID_BITS_FIELD_NUMBER: _ClassVar[int]
    RPC_P99_MS_FIELD_NUMBER: _ClassVar[int]
    node: _chord_pb2.Node
    predecessor: _chord_pb2.Node
    successors: _containers.RepeatedCompositeFieldContainer[_chord_pb2.Node]
    fingers: _containers.RepeatedCompositeFieldContainer[_chord_pb2.Node]
    keys: int
    replicas: int
    id_bits: int
    rpc_p99_ms: float
    def __init__(self, node: _Optional[_Union[_chord_pb2.Node, _Mapping]] = ..., predecessor: _Optional[_Union[_chord_pb2.Node, _Mapping]] = ..., successors: _Optional[_Iterable[_Union[_chord_pb2.Node, _Mapping]]] = ..., fingers: _Optional[_Iterable[_Union[_chord_pb2.Node, _Mapping]]] = ..., keys: _Optional[int] = ..., replicas: _Optional[int] = ..., id_bits: _Optional[int] = ..., rpc_p99_ms: _Optional[float] = ...) -> None: ...

class LookupRequest(_message.Message):
    __slots__ = ("key", "iterative", "key_id")
    KEY_FIELD_NUMBER: _ClassVar[int]
    ITERATIVE_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    key: str
    iterative: bool
    key_id: bytes
    def __init__(self, key: _Optional[str] = ..., iterative: _Optional[bool] = ..., key_id: _Optional[bytes] = ...) -> None: ...

class LookupReply(_message.Message):
    __slots__ = ("key_id", "owner", "hops", "path")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    HOPS_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    key_id: bytes
    owner: _chord_pb2.Node
    hops: int
    path: _containers.RepeatedCompositeFieldContainer[_chord_pb2.Node]
    def __init__(self, key_id: _Optional[bytes] = ..., owner: _Optional[_Union[_chord_pb2.Node, _Mapping]] = ..., hops: _Optional[int] = ..., path: _Optional[_Iterable[_Union[_chord_pb2.Node, _Mapping]]] = ...) -> None: ...

class PutRequest(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: bytes
    def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...

class PutReply(_message.Message):
    __slots__ = ("owner", "version")
    OWNER_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    owner: _chord_pb2.Node
    version: int
    def __init__(self, owner: _Optional[_Union[_chord_pb2.Node, _Mapping]] = ..., version: _Optional[int] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class GetReply(_message.Message):
    __slots__ = ("found", "value", "owner", "version")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    found: bool
    value: bytes
    owner: _chord_pb2.Node
    version: int
    def __init__(self, found: _Optional[bool] = ..., value: _Optional[bytes] = ..., owner: _Optional[_Union[_chord_pb2.Node, _Mapping]] = ..., version: _Optional[int] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class DeleteReply(_message.Message):
    __slots__ = ("found", "owner")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    found: bool
    owner: _chord_pb2.Node
    def __init__(self, found: _Optional[bool] = ..., owner: _Optional[_Union[_chord_pb2.Node, _Mapping]] = ...) -> None: ...
