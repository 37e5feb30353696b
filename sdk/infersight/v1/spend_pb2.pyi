from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class GetSpendRequest(_message.Message):
    __slots__ = ("feature", "model", "user", "period")
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    feature: str
    model: str
    user: str
    period: str
    def __init__(self, feature: _Optional[str] = ..., model: _Optional[str] = ..., user: _Optional[str] = ..., period: _Optional[str] = ...) -> None: ...

class GetSpendResponse(_message.Message):
    __slots__ = ("usd", "since_unix_nano", "as_of_unix_nano")
    USD_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    AS_OF_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    usd: float
    since_unix_nano: int
    as_of_unix_nano: int
    def __init__(self, usd: _Optional[float] = ..., since_unix_nano: _Optional[int] = ..., as_of_unix_nano: _Optional[int] = ...) -> None: ...
