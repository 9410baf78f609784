from chordcast.v1 import link_pb2 as _link_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Node(_message.Message):
    __slots__ = ("id", "address")
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    id: bytes
    address: str
    def __init__(self, id: _Optional[bytes] = ..., address: _Optional[str] = ...) -> None: ...

class PingRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PingReply(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: Node
    def __init__(self, node: _Optional[_Union[Node, _Mapping]] = ...) -> None: ...

class GetNeighborsRequest(_message.Message):
    __slots__ = ("with_fingers", "sample")
    WITH_FINGERS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    with_fingers: bool
    sample: int
    def __init__(self, with_fingers: _Optional[bool] = ..., sample: _Optional[int] = ...) -> None: ...

class GetNeighborsReply(_message.Message):
    __slots__ = ("node", "predecessor", "successors", "fingers", "known", "ring")
    NODE_FIELD_NUMBER: _ClassVar[int]
    PREDECESSOR_FIELD_NUMBER: _ClassVar[int]
    SUCCESSORS_FIELD_NUMBER: _ClassVar[int]
    FINGERS_FIELD_NUMBER: _ClassVar[int]
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    RING_FIELD_NUMBER: _ClassVar[int]
    node: Node
    predecessor: Node
    successors: _containers.RepeatedCompositeFieldContainer[Node]
    fingers: _containers.RepeatedCompositeFieldContainer[Node]
    known: _containers.RepeatedCompositeFieldContainer[Node]
    ring: str
    def __init__(self, node: _Optional[_Union[Node, _Mapping]] = ..., predecessor: _Optional[_Union[Node, _Mapping]] = ..., successors: _Optional[_Iterable[_Union[Node, _Mapping]]] = ..., fingers: _Optional[_Iterable[_Union[Node, _Mapping]]] = ..., known: _Optional[_Iterable[_Union[Node, _Mapping]]] = ..., ring: _Optional[str] = ...) -> None: ...

class RectifyRequest(_message.Message):
    __slots__ = ("candidate",)
    CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    candidate: Node
    def __init__(self, candidate: _Optional[_Union[Node, _Mapping]] = ...) -> None: ...

class RectifyReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RouteRequest(_message.Message):
    __slots__ = ("request_id", "key", "app", "payload", "origin", "path", "final", "budget_ms")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    BUDGET_MS_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    key: bytes
    app: str
    payload: bytes
    origin: Node
    path: _containers.RepeatedCompositeFieldContainer[Node]
    final: bool
    budget_ms: int
    def __init__(self, request_id: _Optional[int] = ..., key: _Optional[bytes] = ..., app: _Optional[str] = ..., payload: _Optional[bytes] = ..., origin: _Optional[_Union[Node, _Mapping]] = ..., path: _Optional[_Iterable[_Union[Node, _Mapping]]] = ..., final: _Optional[bool] = ..., budget_ms: _Optional[int] = ...) -> None: ...

class RouteAck(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RouteResultRequest(_message.Message):
    __slots__ = ("request_id", "owner", "path", "payload", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    owner: Node
    path: _containers.RepeatedCompositeFieldContainer[Node]
    payload: bytes
    error: str
    def __init__(self, request_id: _Optional[int] = ..., owner: _Optional[_Union[Node, _Mapping]] = ..., path: _Optional[_Iterable[_Union[Node, _Mapping]]] = ..., payload: _Optional[bytes] = ..., error: _Optional[str] = ...) -> None: ...

class RouteResultReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NextHopRequest(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    def __init__(self, key: _Optional[bytes] = ...) -> None: ...

class NextHopReply(_message.Message):
    __slots__ = ("done", "candidates")
    DONE_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    done: bool
    candidates: _containers.RepeatedCompositeFieldContainer[Node]
    def __init__(self, done: _Optional[bool] = ..., candidates: _Optional[_Iterable[_Union[Node, _Mapping]]] = ...) -> None: ...

class LeaveNoticeRequest(_message.Message):
    __slots__ = ("leaving", "predecessor", "successors")
    LEAVING_FIELD_NUMBER: _ClassVar[int]
    PREDECESSOR_FIELD_NUMBER: _ClassVar[int]
    SUCCESSORS_FIELD_NUMBER: _ClassVar[int]
    leaving: Node
    predecessor: Node
    successors: _containers.RepeatedCompositeFieldContainer[Node]
    def __init__(self, leaving: _Optional[_Union[Node, _Mapping]] = ..., predecessor: _Optional[_Union[Node, _Mapping]] = ..., successors: _Optional[_Iterable[_Union[Node, _Mapping]]] = ...) -> None: ...

class LeaveNoticeReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AppCallRequest(_message.Message):
    __slots__ = ("app", "payload", "sender")
    APP_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    app: str
    payload: bytes
    sender: Node
    def __init__(self, app: _Optional[str] = ..., payload: _Optional[bytes] = ..., sender: _Optional[_Union[Node, _Mapping]] = ...) -> None: ...

class AppCallReply(_message.Message):
    __slots__ = ("payload",)
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    payload: bytes
    def __init__(self, payload: _Optional[bytes] = ...) -> None: ...

class SpreadRequest(_message.Message):
    __slots__ = ("app", "payload", "origin", "limit", "budget_ms")
    APP_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    BUDGET_MS_FIELD_NUMBER: _ClassVar[int]
    app: str
    payload: bytes
    origin: Node
    limit: bytes
    budget_ms: int
    def __init__(self, app: _Optional[str] = ..., payload: _Optional[bytes] = ..., origin: _Optional[_Union[Node, _Mapping]] = ..., limit: _Optional[bytes] = ..., budget_ms: _Optional[int] = ...) -> None: ...

class SpreadAck(_message.Message):
    __slots__ = ("reached",)
    REACHED_FIELD_NUMBER: _ClassVar[int]
    reached: int
    def __init__(self, reached: _Optional[int] = ...) -> None: ...

class ResolveRequest(_message.Message):
    __slots__ = ("key", "app", "payload", "origin")
    KEY_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    app: str
    payload: bytes
    origin: Node
    def __init__(self, key: _Optional[bytes] = ..., app: _Optional[str] = ..., payload: _Optional[bytes] = ..., origin: _Optional[_Union[Node, _Mapping]] = ...) -> None: ...

class ResolveReply(_message.Message):
    __slots__ = ("owner", "payload", "error", "hints")
    OWNER_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    HINTS_FIELD_NUMBER: _ClassVar[int]
    owner: bool
    payload: bytes
    error: str
    hints: _containers.RepeatedCompositeFieldContainer[Node]
    def __init__(self, owner: _Optional[bool] = ..., payload: _Optional[bytes] = ..., error: _Optional[str] = ..., hints: _Optional[_Iterable[_Union[Node, _Mapping]]] = ...) -> None: ...
