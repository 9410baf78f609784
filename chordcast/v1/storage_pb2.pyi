from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Item(_message.Message):
    __slots__ = ("key", "value", "version", "deleted", "written_ms")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    WRITTEN_MS_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: bytes
    version: int
    deleted: bool
    written_ms: int
    def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ..., version: _Optional[int] = ..., deleted: _Optional[bool] = ..., written_ms: _Optional[int] = ...) -> None: ...

class StorageRequest(_message.Message):
    __slots__ = ("put", "get", "delete", "locate")
    PUT_FIELD_NUMBER: _ClassVar[int]
    GET_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    LOCATE_FIELD_NUMBER: _ClassVar[int]
    put: Item
    get: str
    delete: str
    locate: str
    def __init__(self, put: _Optional[_Union[Item, _Mapping]] = ..., get: _Optional[str] = ..., delete: _Optional[str] = ..., locate: _Optional[str] = ...) -> None: ...

class StorageReply(_message.Message):
    __slots__ = ("found", "item", "error", "version", "full")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FULL_FIELD_NUMBER: _ClassVar[int]
    found: bool
    item: Item
    error: str
    version: int
    full: bool
    def __init__(self, found: _Optional[bool] = ..., item: _Optional[_Union[Item, _Mapping]] = ..., error: _Optional[str] = ..., version: _Optional[int] = ..., full: _Optional[bool] = ...) -> None: ...

class StorageSync(_message.Message):
    __slots__ = ("store", "digest", "fetch", "put")
    STORE_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    FETCH_FIELD_NUMBER: _ClassVar[int]
    PUT_FIELD_NUMBER: _ClassVar[int]
    store: ItemBatch
    digest: Digest
    fetch: str
    put: Item
    def __init__(self, store: _Optional[_Union[ItemBatch, _Mapping]] = ..., digest: _Optional[_Union[Digest, _Mapping]] = ..., fetch: _Optional[str] = ..., put: _Optional[_Union[Item, _Mapping]] = ...) -> None: ...

class ItemBatch(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Item]
    def __init__(self, items: _Optional[_Iterable[_Union[Item, _Mapping]]] = ...) -> None: ...

class Digest(_message.Message):
    __slots__ = ("keys", "versions", "hashes")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    HASHES_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[str]
    versions: _containers.RepeatedScalarFieldContainer[int]
    hashes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, keys: _Optional[_Iterable[str]] = ..., versions: _Optional[_Iterable[int]] = ..., hashes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class StorageSyncReply(_message.Message):
    __slots__ = ("wanted", "item", "found", "newer", "put", "refused")
    WANTED_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    FOUND_FIELD_NUMBER: _ClassVar[int]
    NEWER_FIELD_NUMBER: _ClassVar[int]
    PUT_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    wanted: Digest
    item: Item
    found: bool
    newer: ItemBatch
    put: StorageReply
    refused: bool
    def __init__(self, wanted: _Optional[_Union[Digest, _Mapping]] = ..., item: _Optional[_Union[Item, _Mapping]] = ..., found: _Optional[bool] = ..., newer: _Optional[_Union[ItemBatch, _Mapping]] = ..., put: _Optional[_Union[StorageReply, _Mapping]] = ..., refused: _Optional[bool] = ...) -> None: ...
