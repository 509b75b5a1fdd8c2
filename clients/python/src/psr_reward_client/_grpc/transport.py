"""The gRPC transport (``grpc://host:port``; ``grpcs://`` over TLS): ``RewardService/Reward``
and ``StreamRewards`` with images as raw bytes, ``Info`` for the limits and
``grpc.health.v1.Health`` for readiness, blocking (grpcio) and asyncio (``grpc.aio``).

The call's deadline is the gRPC deadline (what is left of the client's ``timeout``; the
server shortens it to its ``limits.max_timeout_ms``), the API key travels as
``authorization: Bearer`` metadata, and leaving a stream early cancels the call, which
removes its items' queued model work on the server.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from typing import Any

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .._transport import Part, Send, whole_answer
from . import messages
from .status import error_of
from .stubs import Stubs, load


def target_of(url: str) -> str:
    """``host:port`` of a ``grpc://`` or ``grpcs://`` base URL."""
    rest = url.split("://", 1)[1].rstrip("/")
    if not rest or "/" in rest:
        raise ValueError(f"{url}: a gRPC base URL is grpc://host:port")
    return rest


class GrpcSettings:
    """What both gRPC transports open their channels with."""

    def __init__(
        self,
        *,
        headers: Mapping[str, str],
        trust_env: bool,
        ca_file: str | os.PathLike[str] | None,
        verify: bool,
    ) -> None:
        #: Metadata keys are lower case in gRPC (``Authorization`` -> ``authorization``).
        self.metadata = tuple((k.lower(), v) for k, v in headers.items())
        #: The server enforces its own message limits; grpcio's default 4 MB receive limit
        #: would refuse a large chunk's answer. ``trust_env``: grpcio reads ``*_proxy`` like
        #: httpx does, only when asked.
        self.options = [
            ("grpc.max_send_message_length", -1),
            ("grpc.max_receive_message_length", -1),
            ("grpc.enable_http_proxy", 1 if trust_env else 0),
        ]
        if not verify:
            raise ValueError("verify=False is not supported over gRPC (pass ca_file=)")
        roots = None
        if ca_file is not None:
            with open(ca_file, "rb") as f:
                roots = f.read()
        self._roots = roots

    def credentials(self) -> grpc.ChannelCredentials:
        """TLS credentials of a ``grpcs://`` channel: the system roots or ``ca_file``."""
        return grpc.ssl_channel_credentials(root_certificates=self._roots)


def _check_index(index: int, n: int, url: str) -> int:
    if index >= n:
        raise ValueError(f"{url}: streamed result for item {index} of {n}")
    return index


class GrpcTransport:
    """Blocking gRPC: one channel (one HTTP/2 connection, multiplexed) per replica."""

    def __init__(self, s: GrpcSettings) -> None:
        self._s = s
        self._stubs: Stubs = load()
        self._channels: dict[str, tuple[grpc.Channel, Any, Any]] = {}

    def _open(self, url: str) -> tuple[Any, Any]:
        """The replica's ``RewardService`` and ``Health`` stubs (its channel opened once)."""
        got = self._channels.get(url)
        if got is None:
            target = target_of(url)
            ch = (
                grpc.secure_channel(target, self._s.credentials(), self._s.options)
                if url.startswith("grpcs://")
                else grpc.insecure_channel(target, self._s.options)
            )
            got = (ch, self._stubs.rpc.RewardServiceStub(ch), health_pb2_grpc.HealthStub(ch))
            self._channels[url] = got
        return got[1], got[2]

    def probe(self, url: str, timeout: float) -> str | None:
        """``grpc.health.v1.Health/Check`` of the whole server."""
        _, health = self._open(url)
        try:
            r = health.Check(
                health_pb2.HealthCheckRequest(service=""),
                timeout=timeout,
                metadata=self._s.metadata,
            )
        except grpc.RpcError as e:
            return f"{e.code().name}: {e.details()}"
        ok = r.status == health_pb2.HealthCheckResponse.SERVING
        return None if ok else health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)

    def info(self, url: str, timeout: float) -> dict[str, Any]:
        """``RewardService/Info``: its ``info_json`` is the ``GET /info`` document."""
        rewards, _ = self._open(url)
        try:
            r = rewards.Info(
                self._stubs.pb.InfoRequest(), timeout=timeout, metadata=self._s.metadata
            )
        except grpc.RpcError as e:
            raise error_of(e, url) from e
        doc: dict[str, Any] = json.loads(r.info_json)
        return doc

    def send(self, url: str, attempt: Send) -> Generator[Part, None, None]:
        """``Reward`` (one part) or ``StreamRewards`` (a part per item as it finishes)."""
        pb = self._stubs.pb
        rewards, _ = self._open(url)
        msg = messages.request(pb, attempt.items, attempt.call, attempt.known)
        n = len(attempt.items)
        md = self._s.metadata
        if not attempt.stream:
            try:
                resp = rewards.Reward(msg, timeout=attempt.left, metadata=md)
            except grpc.RpcError as e:
                raise error_of(e, url) from e
            yield whole_answer(messages.response(pb, resp), n, url)
            return
        call = rewards.StreamRewards(
            messages.stream_request(pb, msg), timeout=attempt.left, metadata=md
        )
        try:
            for m in call:
                i = _check_index(m.index, n, url)
                yield Part([i], [messages.item_result(pb, m.result)], None)
        except grpc.RpcError as e:
            raise error_of(e, url) from e
        finally:
            call.cancel()  # a no-op after the end; stops the server's work when left early

    def close(self) -> None:
        """Closes every channel."""
        for ch, _, _ in self._channels.values():
            ch.close()
        self._channels.clear()


class AsyncGrpcTransport:
    """asyncio gRPC (``grpc.aio``; its channels belong to the loop that opened them)."""

    def __init__(self, s: GrpcSettings, run_cpu: Callable[..., Any]) -> None:
        self._s = s
        self._stubs: Stubs = load()
        #: ``run_cpu(fn, *args)``: builds large request messages off the event loop.
        self._run_cpu = run_cpu
        self._channels: dict[str, tuple[grpc.aio.Channel, Any, Any]] = {}

    def _open(self, url: str) -> tuple[Any, Any]:
        got = self._channels.get(url)
        if got is None:
            target = target_of(url)
            ch = (
                grpc.aio.secure_channel(target, self._s.credentials(), self._s.options)
                if url.startswith("grpcs://")
                else grpc.aio.insecure_channel(target, self._s.options)
            )
            got = (ch, self._stubs.rpc.RewardServiceStub(ch), health_pb2_grpc.HealthStub(ch))
            self._channels[url] = got
        return got[1], got[2]

    async def probe(self, url: str, timeout: float) -> str | None:
        """See :meth:`GrpcTransport.probe`."""
        _, health = self._open(url)
        try:
            r = await health.Check(
                health_pb2.HealthCheckRequest(service=""),
                timeout=timeout,
                metadata=self._s.metadata,
            )
        except grpc.RpcError as e:
            return f"{e.code().name}: {e.details()}"
        ok = r.status == health_pb2.HealthCheckResponse.SERVING
        return None if ok else health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)

    async def info(self, url: str, timeout: float) -> dict[str, Any]:
        """See :meth:`GrpcTransport.info`."""
        rewards, _ = self._open(url)
        try:
            r = await rewards.Info(
                self._stubs.pb.InfoRequest(), timeout=timeout, metadata=self._s.metadata
            )
        except grpc.RpcError as e:
            raise error_of(e, url) from e
        doc: dict[str, Any] = json.loads(r.info_json)
        return doc

    async def send(self, url: str, attempt: Send) -> AsyncGenerator[Part, None]:
        """See :meth:`GrpcTransport.send`."""
        pb = self._stubs.pb
        rewards, _ = self._open(url)
        a = attempt
        msg = await self._run_cpu(messages.request, pb, a.items, a.call, a.known)
        n = len(a.items)
        md = self._s.metadata
        if not a.stream:
            try:
                resp = await rewards.Reward(msg, timeout=a.left, metadata=md)
            except grpc.RpcError as e:
                raise error_of(e, url) from e
            yield whole_answer(messages.response(pb, resp), n, url)
            return
        call = rewards.StreamRewards(messages.stream_request(pb, msg), timeout=a.left, metadata=md)
        try:
            async for m in call:
                i = _check_index(m.index, n, url)
                yield Part([i], [messages.item_result(pb, m.result)], None)
        except grpc.RpcError as e:
            raise error_of(e, url) from e
        finally:
            call.cancel()

    async def aclose(self) -> None:
        """Closes every channel."""
        for ch, _, _ in self._channels.values():
            await ch.close()
        self._channels.clear()
