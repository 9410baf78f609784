from chordcast.v1 import link_pb2 as _link_pb2
from chordcast.v1 import chord_pb2 as _chord_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GroupRecord(_message.Message):
    __slots__ = ("name", "creator", "created_ms", "token_hash", "archive", "owner", "publishers", "subscribers")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREATOR_FIELD_NUMBER: _ClassVar[int]
    CREATED_MS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_HASH_FIELD_NUMBER: _ClassVar[int]
    ARCHIVE_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    PUBLISHERS_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    creator: str
    created_ms: int
    token_hash: bytes
    archive: int
    owner: str
    publishers: _containers.RepeatedScalarFieldContainer[str]
    subscribers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., creator: _Optional[str] = ..., created_ms: _Optional[int] = ..., token_hash: _Optional[bytes] = ..., archive: _Optional[int] = ..., owner: _Optional[str] = ..., publishers: _Optional[_Iterable[str]] = ..., subscribers: _Optional[_Iterable[str]] = ...) -> None: ...

class GroupMessage(_message.Message):
    __slots__ = ("seq", "payload", "sender", "ts_ms", "message_id", "proof")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    TS_MS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    seq: int
    payload: bytes
    sender: str
    ts_ms: int
    message_id: str
    proof: Proof
    def __init__(self, seq: _Optional[int] = ..., payload: _Optional[bytes] = ..., sender: _Optional[str] = ..., ts_ms: _Optional[int] = ..., message_id: _Optional[str] = ..., proof: _Optional[_Union[Proof, _Mapping]] = ...) -> None: ...

class McastRouted(_message.Message):
    __slots__ = ("create", "join", "publish", "destroy", "anycast", "info", "range", "unicast")
    CREATE_FIELD_NUMBER: _ClassVar[int]
    JOIN_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_FIELD_NUMBER: _ClassVar[int]
    DESTROY_FIELD_NUMBER: _ClassVar[int]
    ANYCAST_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    UNICAST_FIELD_NUMBER: _ClassVar[int]
    create: CreateOp
    join: JoinOp
    publish: PublishOp
    destroy: DestroyOp
    anycast: AnycastOp
    info: str
    range: RangeOp
    unicast: bytes
    def __init__(self, create: _Optional[_Union[CreateOp, _Mapping]] = ..., join: _Optional[_Union[JoinOp, _Mapping]] = ..., publish: _Optional[_Union[PublishOp, _Mapping]] = ..., destroy: _Optional[_Union[DestroyOp, _Mapping]] = ..., anycast: _Optional[_Union[AnycastOp, _Mapping]] = ..., info: _Optional[str] = ..., range: _Optional[_Union[RangeOp, _Mapping]] = ..., unicast: _Optional[bytes] = ...) -> None: ...

class CreateOp(_message.Message):
    __slots__ = ("name", "creator", "archive", "owner", "publishers", "subscribers")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREATOR_FIELD_NUMBER: _ClassVar[int]
    ARCHIVE_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    PUBLISHERS_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    creator: str
    archive: int
    owner: str
    publishers: _containers.RepeatedScalarFieldContainer[str]
    subscribers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., creator: _Optional[str] = ..., archive: _Optional[int] = ..., owner: _Optional[str] = ..., publishers: _Optional[_Iterable[str]] = ..., subscribers: _Optional[_Iterable[str]] = ...) -> None: ...

class JoinOp(_message.Message):
    __slots__ = ("name", "child")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CHILD_FIELD_NUMBER: _ClassVar[int]
    name: str
    child: _chord_pb2.Node
    def __init__(self, name: _Optional[str] = ..., child: _Optional[_Union[_chord_pb2.Node, _Mapping]] = ...) -> None: ...

class PublishOp(_message.Message):
    __slots__ = ("name", "payload", "sender", "message_id", "principal", "proof")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    name: str
    payload: bytes
    sender: str
    message_id: str
    principal: str
    proof: Proof
    def __init__(self, name: _Optional[str] = ..., payload: _Optional[bytes] = ..., sender: _Optional[str] = ..., message_id: _Optional[str] = ..., principal: _Optional[str] = ..., proof: _Optional[_Union[Proof, _Mapping]] = ...) -> None: ...

class DestroyOp(_message.Message):
    __slots__ = ("name", "token", "principal", "proof")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    name: str
    token: str
    principal: str
    proof: Proof
    def __init__(self, name: _Optional[str] = ..., token: _Optional[str] = ..., principal: _Optional[str] = ..., proof: _Optional[_Union[Proof, _Mapping]] = ...) -> None: ...

class Proof(_message.Message):
    __slots__ = ("cert_pem", "signature", "signed_ms")
    CERT_PEM_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SIGNED_MS_FIELD_NUMBER: _ClassVar[int]
    cert_pem: bytes
    signature: bytes
    signed_ms: int
    def __init__(self, cert_pem: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., signed_ms: _Optional[int] = ...) -> None: ...

class AnycastOp(_message.Message):
    __slots__ = ("name", "payload", "sender")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    name: str
    payload: bytes
    sender: str
    def __init__(self, name: _Optional[str] = ..., payload: _Optional[bytes] = ..., sender: _Optional[str] = ...) -> None: ...

class RangeOp(_message.Message):
    __slots__ = ("name", "from_seq", "to_seq")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQ_FIELD_NUMBER: _ClassVar[int]
    TO_SEQ_FIELD_NUMBER: _ClassVar[int]
    name: str
    from_seq: int
    to_seq: int
    def __init__(self, name: _Optional[str] = ..., from_seq: _Optional[int] = ..., to_seq: _Optional[int] = ...) -> None: ...

class McastReply(_message.Message):
    __slots__ = ("error", "code", "token", "seq", "record", "messages", "first_available", "root", "delivered", "members", "depth", "node", "positioned")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    FIRST_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    ROOT_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    POSITIONED_FIELD_NUMBER: _ClassVar[int]
    error: str
    code: str
    token: str
    seq: int
    record: GroupRecord
    messages: _containers.RepeatedCompositeFieldContainer[GroupMessage]
    first_available: int
    root: _chord_pb2.Node
    delivered: bool
    members: int
    depth: int
    node: _chord_pb2.Node
    positioned: bool
    def __init__(self, error: _Optional[str] = ..., code: _Optional[str] = ..., token: _Optional[str] = ..., seq: _Optional[int] = ..., record: _Optional[_Union[GroupRecord, _Mapping]] = ..., messages: _Optional[_Iterable[_Union[GroupMessage, _Mapping]]] = ..., first_available: _Optional[int] = ..., root: _Optional[_Union[_chord_pb2.Node, _Mapping]] = ..., delivered: _Optional[bool] = ..., members: _Optional[int] = ..., depth: _Optional[int] = ..., node: _Optional[_Union[_chord_pb2.Node, _Mapping]] = ..., positioned: _Optional[bool] = ...) -> None: ...

class McastDirect(_message.Message):
    __slots__ = ("data", "refresh", "prune", "end", "range", "replica", "anycast", "adopt", "reparent", "roots", "broadcast")
    DATA_FIELD_NUMBER: _ClassVar[int]
    REFRESH_FIELD_NUMBER: _ClassVar[int]
    PRUNE_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    ANYCAST_FIELD_NUMBER: _ClassVar[int]
    ADOPT_FIELD_NUMBER: _ClassVar[int]
    REPARENT_FIELD_NUMBER: _ClassVar[int]
    ROOTS_FIELD_NUMBER: _ClassVar[int]
    BROADCAST_FIELD_NUMBER: _ClassVar[int]
    data: DataOp
    refresh: RefreshOp
    prune: RefreshOp
    end: str
    range: RangeOp
    replica: ReplicaOp
    anycast: AnycastOp
    adopt: RefreshOp
    reparent: ReparentOp
    roots: str
    broadcast: bytes
    def __init__(self, data: _Optional[_Union[DataOp, _Mapping]] = ..., refresh: _Optional[_Union[RefreshOp, _Mapping]] = ..., prune: _Optional[_Union[RefreshOp, _Mapping]] = ..., end: _Optional[str] = ..., range: _Optional[_Union[RangeOp, _Mapping]] = ..., replica: _Optional[_Union[ReplicaOp, _Mapping]] = ..., anycast: _Optional[_Union[AnycastOp, _Mapping]] = ..., adopt: _Optional[_Union[RefreshOp, _Mapping]] = ..., reparent: _Optional[_Union[ReparentOp, _Mapping]] = ..., roots: _Optional[str] = ..., broadcast: _Optional[bytes] = ...) -> None: ...

class DataOp(_message.Message):
    __slots__ = ("name", "messages")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    name: str
    messages: _containers.RepeatedCompositeFieldContainer[GroupMessage]
    def __init__(self, name: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[GroupMessage, _Mapping]]] = ...) -> None: ...

class RefreshOp(_message.Message):
    __slots__ = ("name", "child", "members", "height")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CHILD_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    name: str
    child: _chord_pb2.Node
    members: int
    height: int
    def __init__(self, name: _Optional[str] = ..., child: _Optional[_Union[_chord_pb2.Node, _Mapping]] = ..., members: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class ReparentOp(_message.Message):
    __slots__ = ("name", "parent")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    name: str
    parent: _chord_pb2.Node
    def __init__(self, name: _Optional[str] = ..., parent: _Optional[_Union[_chord_pb2.Node, _Mapping]] = ...) -> None: ...

class ReplicaOp(_message.Message):
    __slots__ = ("name", "record", "counter", "messages", "drop")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    COUNTER_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    DROP_FIELD_NUMBER: _ClassVar[int]
    name: str
    record: GroupRecord
    counter: int
    messages: _containers.RepeatedCompositeFieldContainer[GroupMessage]
    drop: bool
    def __init__(self, name: _Optional[str] = ..., record: _Optional[_Union[GroupRecord, _Mapping]] = ..., counter: _Optional[int] = ..., messages: _Optional[_Iterable[_Union[GroupMessage, _Mapping]]] = ..., drop: _Optional[bool] = ...) -> None: ...

class McastDirectReply(_message.Message):
    __slots__ = ("error", "unknown", "last_seq", "messages", "delivered", "node", "records", "counters", "positioned")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    POSITIONED_FIELD_NUMBER: _ClassVar[int]
    error: str
    unknown: bool
    last_seq: int
    messages: _containers.RepeatedCompositeFieldContainer[GroupMessage]
    delivered: bool
    node: _chord_pb2.Node
    records: _containers.RepeatedCompositeFieldContainer[GroupRecord]
    counters: _containers.RepeatedScalarFieldContainer[int]
    positioned: bool
    def __init__(self, error: _Optional[str] = ..., unknown: _Optional[bool] = ..., last_seq: _Optional[int] = ..., messages: _Optional[_Iterable[_Union[GroupMessage, _Mapping]]] = ..., delivered: _Optional[bool] = ..., node: _Optional[_Union[_chord_pb2.Node, _Mapping]] = ..., records: _Optional[_Iterable[_Union[GroupRecord, _Mapping]]] = ..., counters: _Optional[_Iterable[int]] = ..., positioned: _Optional[bool] = ...) -> None: ...

class CreateGroupRequest(_message.Message):
    __slots__ = ("name", "creator", "publishers", "subscribers")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREATOR_FIELD_NUMBER: _ClassVar[int]
    PUBLISHERS_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    creator: str
    publishers: _containers.RepeatedScalarFieldContainer[str]
    subscribers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., creator: _Optional[str] = ..., publishers: _Optional[_Iterable[str]] = ..., subscribers: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateGroupReply(_message.Message):
    __slots__ = ("name", "group_id", "root", "token")
    NAME_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    ROOT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    name: str
    group_id: bytes
    root: _chord_pb2.Node
    token: str
    def __init__(self, name: _Optional[str] = ..., group_id: _Optional[bytes] = ..., root: _Optional[_Union[_chord_pb2.Node, _Mapping]] = ..., token: _Optional[str] = ...) -> None: ...

class JoinGroupRequest(_message.Message):
    __slots__ = ("name", "resume", "last_seq", "member")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    name: str
    resume: bool
    last_seq: int
    member: str
    def __init__(self, name: _Optional[str] = ..., resume: _Optional[bool] = ..., last_seq: _Optional[int] = ..., member: _Optional[str] = ...) -> None: ...

class GroupEvent(_message.Message):
    __slots__ = ("kind", "group", "seq", "payload", "sender", "ts_ms", "last_seq", "more", "message_id", "proof")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[GroupEvent.Kind]
        JOINED: _ClassVar[GroupEvent.Kind]
        MESSAGE: _ClassVar[GroupEvent.Kind]
        GAP: _ClassVar[GroupEvent.Kind]
        ENDED: _ClassVar[GroupEvent.Kind]
        ANYCAST: _ClassVar[GroupEvent.Kind]
        LAGGED: _ClassVar[GroupEvent.Kind]
    KIND_UNSPECIFIED: GroupEvent.Kind
    JOINED: GroupEvent.Kind
    MESSAGE: GroupEvent.Kind
    GAP: GroupEvent.Kind
    ENDED: GroupEvent.Kind
    ANYCAST: GroupEvent.Kind
    LAGGED: GroupEvent.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    TS_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    kind: GroupEvent.Kind
    group: str
    seq: int
    payload: bytes
    sender: str
    ts_ms: int
    last_seq: int
    more: _containers.RepeatedCompositeFieldContainer[GroupEvent]
    message_id: str
    proof: Proof
    def __init__(self, kind: _Optional[_Union[GroupEvent.Kind, str]] = ..., group: _Optional[str] = ..., seq: _Optional[int] = ..., payload: _Optional[bytes] = ..., sender: _Optional[str] = ..., ts_ms: _Optional[int] = ..., last_seq: _Optional[int] = ..., more: _Optional[_Iterable[_Union[GroupEvent, _Mapping]]] = ..., message_id: _Optional[str] = ..., proof: _Optional[_Union[Proof, _Mapping]] = ...) -> None: ...

class LeaveGroupRequest(_message.Message):
    __slots__ = ("name", "member")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    name: str
    member: str
    def __init__(self, name: _Optional[str] = ..., member: _Optional[str] = ...) -> None: ...

class LeaveGroupReply(_message.Message):
    __slots__ = ("left",)
    LEFT_FIELD_NUMBER: _ClassVar[int]
    left: int
    def __init__(self, left: _Optional[int] = ...) -> None: ...

class SendRequest(_message.Message):
    __slots__ = ("name", "payload", "sender", "message_id", "signature", "signed_ms")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SIGNED_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    payload: bytes
    sender: str
    message_id: str
    signature: bytes
    signed_ms: int
    def __init__(self, name: _Optional[str] = ..., payload: _Optional[bytes] = ..., sender: _Optional[str] = ..., message_id: _Optional[str] = ..., signature: _Optional[bytes] = ..., signed_ms: _Optional[int] = ...) -> None: ...

class SendReply(_message.Message):
    __slots__ = ("seq",)
    SEQ_FIELD_NUMBER: _ClassVar[int]
    seq: int
    def __init__(self, seq: _Optional[int] = ...) -> None: ...

class DestroyGroupRequest(_message.Message):
    __slots__ = ("name", "token", "signature", "signed_ms")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SIGNED_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    token: str
    signature: bytes
    signed_ms: int
    def __init__(self, name: _Optional[str] = ..., token: _Optional[str] = ..., signature: _Optional[bytes] = ..., signed_ms: _Optional[int] = ...) -> None: ...

class DestroyGroupReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AnycastRequest(_message.Message):
    __slots__ = ("name", "payload", "sender")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    name: str
    payload: bytes
    sender: str
    def __init__(self, name: _Optional[str] = ..., payload: _Optional[bytes] = ..., sender: _Optional[str] = ...) -> None: ...

class AnycastReply(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: _chord_pb2.Node
    def __init__(self, node: _Optional[_Union[_chord_pb2.Node, _Mapping]] = ...) -> None: ...

class GroupInfoRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GroupInfo(_message.Message):
    __slots__ = ("name", "group_id", "root", "creator", "created_ms", "last_seq", "members", "depth", "owner", "publishers", "subscribers")
    NAME_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    ROOT_FIELD_NUMBER: _ClassVar[int]
    CREATOR_FIELD_NUMBER: _ClassVar[int]
    CREATED_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    PUBLISHERS_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    group_id: bytes
    root: _chord_pb2.Node
    creator: str
    created_ms: int
    last_seq: int
    members: int
    depth: int
    owner: str
    publishers: _containers.RepeatedScalarFieldContainer[str]
    subscribers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., group_id: _Optional[bytes] = ..., root: _Optional[_Union[_chord_pb2.Node, _Mapping]] = ..., creator: _Optional[str] = ..., created_ms: _Optional[int] = ..., last_seq: _Optional[int] = ..., members: _Optional[int] = ..., depth: _Optional[int] = ..., owner: _Optional[str] = ..., publishers: _Optional[_Iterable[str]] = ..., subscribers: _Optional[_Iterable[str]] = ...) -> None: ...

class ListGroupsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListGroupsReply(_message.Message):
    __slots__ = ("groups",)
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedCompositeFieldContainer[GroupInfo]
    def __init__(self, groups: _Optional[_Iterable[_Union[GroupInfo, _Mapping]]] = ...) -> None: ...

class BroadcastRequest(_message.Message):
    __slots__ = ("payload", "sender")
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    payload: bytes
    sender: str
    def __init__(self, payload: _Optional[bytes] = ..., sender: _Optional[str] = ...) -> None: ...

class BroadcastReply(_message.Message):
    __slots__ = ("reached",)
    REACHED_FIELD_NUMBER: _ClassVar[int]
    reached: int
    def __init__(self, reached: _Optional[int] = ...) -> None: ...

class UnicastRequest(_message.Message):
    __slots__ = ("key", "payload", "sender")
    KEY_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    key: str
    payload: bytes
    sender: str
    def __init__(self, key: _Optional[str] = ..., payload: _Optional[bytes] = ..., sender: _Optional[str] = ...) -> None: ...

class UnicastReply(_message.Message):
    __slots__ = ("owner",)
    OWNER_FIELD_NUMBER: _ClassVar[int]
    owner: _chord_pb2.Node
    def __init__(self, owner: _Optional[_Union[_chord_pb2.Node, _Mapping]] = ...) -> None: ...

class RolesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GroupRole(_message.Message):
    __slots__ = ("name", "root", "children", "members", "parent", "last_seq", "child_addresses", "member_names")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROOT_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    CHILD_ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    MEMBER_NAMES_FIELD_NUMBER: _ClassVar[int]
    name: str
    root: bool
    children: int
    members: int
    parent: str
    last_seq: int
    child_addresses: _containers.RepeatedScalarFieldContainer[str]
    member_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., root: _Optional[bool] = ..., children: _Optional[int] = ..., members: _Optional[int] = ..., parent: _Optional[str] = ..., last_seq: _Optional[int] = ..., child_addresses: _Optional[_Iterable[str]] = ..., member_names: _Optional[_Iterable[str]] = ...) -> None: ...

class RolesReply(_message.Message):
    __slots__ = ("groups",)
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedCompositeFieldContainer[GroupRole]
    def __init__(self, groups: _Optional[_Iterable[_Union[GroupRole, _Mapping]]] = ...) -> None: ...

class InboxRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InboxMessage(_message.Message):
    __slots__ = ("kind", "payload", "sender")
    KIND_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    kind: str
    payload: bytes
    sender: str
    def __init__(self, kind: _Optional[str] = ..., payload: _Optional[bytes] = ..., sender: _Optional[str] = ...) -> None: ...
