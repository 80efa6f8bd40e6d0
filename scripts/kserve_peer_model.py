"""The KServe Python server on an OpenVINO IR model: the peer of ``scripts/bench --peer kserve``.

Run by the peer virtualenv's python (``kserve``, ``openvino``, ``numpy``; see scripts/BENCH.md),
never by ovtrio's: this file imports nothing from ovtrio or from the bench. The model class is
what a straightforward KServe predictor for OpenVINO looks like: the IR compiled once with the
same plugin config as the bench (``PERFORMANCE_HINT=THROUGHPUT``), a pool of
``OPTIMAL_NUMBER_OF_INFER_REQUESTS`` infer requests, and an async ``predict`` that takes a free
request, starts it with the request's numpy arrays, awaits its completion callback and answers
with numpy arrays (binary on the wire when the client asked for binary). KServe's own REST
(FastAPI + uvicorn) and gRPC (grpcio aio) servers do the rest, in one process (``--workers 1``).

Usage (peer venv's python):
    kserve_peer_model.py --model_xml M.xml --model_name tiny --http_port P --grpc_port G
    [--plugin_config '{"PERFORMANCE_HINT": "THROUGHPUT"}'] [--log_level WARNING]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
from typing import Any

import kserve
import kserve.logging
import openvino as ov
from kserve import InferOutput, InferRequest, InferResponse, model_server
from kserve.utils.numpy_codec import from_np_dtype
from kserve.utils.utils import generate_uuid


class OpenVINOModel(kserve.Model):
    """One compiled OpenVINO model behind KServe's v2 data plane (REST and gRPC)."""

    def __init__(self, name: str, xml: str, plugin_config: dict[str, Any]) -> None:
        super().__init__(name)
        self.xml = xml
        self.plugin_config = plugin_config
        self.compiled: ov.CompiledModel | None = None
        self.idle: asyncio.Queue[ov.InferRequest] = asyncio.Queue()

    def load(self) -> bool:
        self.compiled = ov.Core().compile_model(self.xml, "CPU", self.plugin_config)
        for _ in range(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")):
            self.idle.put_nowait(self.compiled.create_infer_request())
        self.ready = True
        return True

    async def predict(
        self, payload: InferRequest, headers: dict[str, str] | None = None
    ) -> InferResponse:
        assert self.compiled is not None
        inputs = {inp.name: inp.as_numpy() for inp in payload.inputs}
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def finished(_userdata: Any) -> None:  # on OpenVINO's thread
            loop.call_soon_threadsafe(_resolve, done)

        request = await self.idle.get()
        started = False
        try:
            request.set_callback(finished, None)
            request.start_async(inputs)
            started = True
            await asyncio.shield(done)  # a cancelled call leaves the request running
            outputs = []
            for port in self.compiled.outputs:
                data = request.get_tensor(port).data.copy()
                out = InferOutput(port.get_any_name(), list(data.shape), from_np_dtype(data.dtype))
                out.set_data_from_numpy(data, binary_data=payload.use_binary_outputs)
                outputs.append(out)
        finally:
            if done.done() or not started:
                self.idle.put_nowait(request)
            else:  # back to the pool once OpenVINO is done with it
                done.add_done_callback(lambda _: self.idle.put_nowait(request))
        return InferResponse(
            response_id=payload.id or generate_uuid(),  # as KServe's get_predict_response
            model_name=self.name,
            infer_outputs=outputs,
            use_binary_outputs=payload.use_binary_outputs,
            requested_outputs=payload.request_outputs,
        )


def _resolve(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)


def configure_logging(level: str) -> None:
    """KServe's own logging setup at ``level`` (no access log or per-request latency line)."""
    config = copy.deepcopy(kserve.logging.KSERVE_LOG_CONFIG)
    for logger in config["loggers"].values():
        logger["level"] = level
    kserve.logging.configure_logging(config)


def main() -> None:
    ap = argparse.ArgumentParser(parents=[model_server.parser], description=__doc__)
    ap.add_argument("--model_xml", required=True, help="OpenVINO IR (.xml)")
    ap.add_argument("--plugin_config", default='{"PERFORMANCE_HINT": "THROUGHPUT"}')
    ap.add_argument("--log_level", default="WARNING")
    args = ap.parse_args()
    configure_logging(args.log_level)
    model = OpenVINOModel(args.model_name, args.model_xml, json.loads(args.plugin_config))
    model.load()
    kserve.ModelServer(
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        workers=1,
        enable_latency_logging=False,
    ).start([model])


if __name__ == "__main__":
    main()
