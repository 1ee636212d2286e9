import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PushRequest(_message.Message):
    __slots__ = ("streams", "format")
    STREAMS_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    streams: _containers.RepeatedCompositeFieldContainer[StreamAdapter]
    format: str
    def __init__(self, streams: _Optional[_Iterable[_Union[StreamAdapter, _Mapping]]] = ..., format: _Optional[str] = ...) -> None: ...

class PushResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StreamAdapter(_message.Message):
    __slots__ = ("labels", "entries", "hash")
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    labels: str
    entries: _containers.RepeatedCompositeFieldContainer[EntryAdapter]
    hash: int
    def __init__(self, labels: _Optional[str] = ..., entries: _Optional[_Iterable[_Union[EntryAdapter, _Mapping]]] = ..., hash: _Optional[int] = ...) -> None: ...

class LabelPairAdapter(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class EntryAdapter(_message.Message):
    __slots__ = ("timestamp", "line", "structuredMetadata", "parsed")
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    STRUCTUREDMETADATA_FIELD_NUMBER: _ClassVar[int]
    PARSED_FIELD_NUMBER: _ClassVar[int]
    timestamp: _timestamp_pb2.Timestamp
    line: str
    structuredMetadata: _containers.RepeatedCompositeFieldContainer[LabelPairAdapter]
    parsed: _containers.RepeatedCompositeFieldContainer[LabelPairAdapter]
    def __init__(self, timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., line: _Optional[str] = ..., structuredMetadata: _Optional[_Iterable[_Union[LabelPairAdapter, _Mapping]]] = ..., parsed: _Optional[_Iterable[_Union[LabelPairAdapter, _Mapping]]] = ...) -> None: ...

class RawPushRequest(_message.Message):
    __slots__ = ("streams",)
    STREAMS_FIELD_NUMBER: _ClassVar[int]
    streams: _containers.RepeatedCompositeFieldContainer[RawStreamAdapter]
    def __init__(self, streams: _Optional[_Iterable[_Union[RawStreamAdapter, _Mapping]]] = ...) -> None: ...

class RawStreamAdapter(_message.Message):
    __slots__ = ("labels", "entries")
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    labels: bytes
    entries: _containers.RepeatedCompositeFieldContainer[RawEntryAdapter]
    def __init__(self, labels: _Optional[bytes] = ..., entries: _Optional[_Iterable[_Union[RawEntryAdapter, _Mapping]]] = ...) -> None: ...

class RawLabelPairAdapter(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: bytes
    value: bytes
    def __init__(self, name: _Optional[bytes] = ..., value: _Optional[bytes] = ...) -> None: ...

class RawEntryAdapter(_message.Message):
    __slots__ = ("timestamp", "line", "structuredMetadata")
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    STRUCTUREDMETADATA_FIELD_NUMBER: _ClassVar[int]
    timestamp: _timestamp_pb2.Timestamp
    line: bytes
    structuredMetadata: _containers.RepeatedCompositeFieldContainer[RawLabelPairAdapter]
    def __init__(self, timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., line: _Optional[bytes] = ..., structuredMetadata: _Optional[_Iterable[_Union[RawLabelPairAdapter, _Mapping]]] = ...) -> None: ...

class LeanPushRequest(_message.Message):
    __slots__ = ("streams", "format")
    STREAMS_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    streams: _containers.RepeatedCompositeFieldContainer[LeanStreamAdapter]
    format: str
    def __init__(self, streams: _Optional[_Iterable[_Union[LeanStreamAdapter, _Mapping]]] = ..., format: _Optional[str] = ...) -> None: ...

class LeanStreamAdapter(_message.Message):
    __slots__ = ("labels", "entries", "hash")
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    labels: str
    entries: _containers.RepeatedCompositeFieldContainer[LeanEntryAdapter]
    hash: int
    def __init__(self, labels: _Optional[str] = ..., entries: _Optional[_Iterable[_Union[LeanEntryAdapter, _Mapping]]] = ..., hash: _Optional[int] = ...) -> None: ...

class LeanEntryAdapter(_message.Message):
    __slots__ = ("timestamp", "line")
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    timestamp: bytes
    line: str
    def __init__(self, timestamp: _Optional[bytes] = ..., line: _Optional[str] = ...) -> None: ...

class MetaProbeRequest(_message.Message):
    __slots__ = ("streams",)
    STREAMS_FIELD_NUMBER: _ClassVar[int]
    streams: _containers.RepeatedCompositeFieldContainer[MetaProbeStream]
    def __init__(self, streams: _Optional[_Iterable[_Union[MetaProbeStream, _Mapping]]] = ...) -> None: ...

class MetaProbeStream(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[MetaProbeEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[MetaProbeEntry, _Mapping]]] = ...) -> None: ...

class MetaProbeEntry(_message.Message):
    __slots__ = ("structuredMetadata",)
    STRUCTUREDMETADATA_FIELD_NUMBER: _ClassVar[int]
    structuredMetadata: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, structuredMetadata: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ColumnPushRequest(_message.Message):
    __slots__ = ("streams",)
    STREAMS_FIELD_NUMBER: _ClassVar[int]
    streams: _containers.RepeatedCompositeFieldContainer[ColumnStreamAdapter]
    def __init__(self, streams: _Optional[_Iterable[_Union[ColumnStreamAdapter, _Mapping]]] = ...) -> None: ...

class ColumnStreamAdapter(_message.Message):
    __slots__ = ("labels", "entries")
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    labels: str
    entries: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, labels: _Optional[str] = ..., entries: _Optional[_Iterable[bytes]] = ...) -> None: ...
