"""Fleet-wide spend for the SDK's budgets: the `infersight.v1.Spend` gRPC service.

Served on the OTLP/gRPC server next to Feedback. `spend_usd(store, ...)` sums the stored cost
of a scope since the start of the UTC day or month: on the rollup for feature and model, on
the span table when a user is named (the rollup has no user). With API keys on, the caller's
key decides the project, so one project never reads another's spend.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

import grpc

from infersight.v1 import spend_pb2, spend_pb2_grpc

from ..auth import ApiKeys, grpc_project
from ..store import Store
from ..store.schema import ROLLUP_TABLE, SPANS_TABLE

_PERIODS = ("day", "month")


def period_start(period: str, now: datetime) -> datetime:
    """00:00 UTC today, or on the 1st of this month."""
    day = now.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return day.replace(day=1) if period == "month" else day


def spend_usd(store: Store, since: datetime, *, feature: str = "", model: str = "",
              user: str = "", project: str | None = None) -> float:
    """USD spent since `since` by calls matching every non-empty argument."""
    params = {"since": since.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
              "feature": feature, "model": model, "user": user, "project": project or ""}
    scope = ("({feature:String} = '' OR Feature = {feature:String}) "
             "AND ({project:String} = '' OR ProjectId = {project:String})")
    if user:
        sql = (f"SELECT sum(CostUsd) AS usd FROM {store.database}.{SPANS_TABLE} "
               "WHERE Timestamp >= {since:DateTime('UTC')} AND Operation != '' AND " + scope +
               " AND UserId = {user:String} AND ({model:String} = '' OR "
               "if(ResponseModel != '', ResponseModel, RequestModel) = {model:String} "
               "OR RequestModel = {model:String})")
    else:
        # The rollup keys the served model; a budget names the model the code asks for,
        # which the served name extends (gpt-4o-mini -> gpt-4o-mini-2024-07-18).
        sql = (f"SELECT sum(CostUsd) AS usd FROM {store.database}.{ROLLUP_TABLE} "
               "WHERE Minute >= {since:DateTime('UTC')} AND Operation != '' AND " + scope +
               " AND ({model:String} = '' OR Model = {model:String} "
               "OR startsWith(Model, concat({model:String}, '-')))")
    usd = store.query(sql, params)["usd"]
    return float(usd.iloc[0]) if len(usd) else 0.0


class SpendService(spend_pb2_grpc.SpendServicer):
    def __init__(self, store: Store, api_keys: ApiKeys | None = None):
        self.store = store
        self.api_keys = api_keys

    def Get(self, request: spend_pb2.GetSpendRequest,
            context: grpc.ServicerContext) -> spend_pb2.GetSpendResponse:
        project = grpc_project(self.api_keys, context)
        period = request.period or "day"
        if period not in _PERIODS:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"period must be day or month, got {period!r}")
        now = datetime.now(timezone.utc)
        since = period_start(period, now)
        try:
            usd = spend_usd(self.store, since, feature=request.feature, model=request.model,
                            user=request.user, project=project)
        except Exception as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"store unavailable, retry: {exc}")
        return spend_pb2.GetSpendResponse(
            usd=usd, since_unix_nano=int(since.timestamp() * 1e9), as_of_unix_nano=time.time_ns())


def add_spend_service(server: grpc.Server, store: Store, api_keys: ApiKeys | None = None) -> None:
    """Serve `infersight.v1.Spend` on `server` (the OTLP/gRPC one) before it starts."""
    spend_pb2_grpc.add_SpendServicer_to_server(SpendService(store, api_keys), server)
