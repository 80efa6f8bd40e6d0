// A grpc-js client of ovtrio's KServe gRPC API, run by tests/e2e/test_grpc_wire.py.
// Usage: node grpc_js_client.js <host:port> <the repository's protos folder> <api key>
// Prints one JSON object: per call, its status code and what the test checks.
"use strict";

const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const [target, protos, apiKey] = process.argv.slice(2);
const definition = protoLoader.loadSync("inference/grpc_service.proto", {
  includeDirs: [protos],
  keepCase: true,
  longs: Number,
});
const inference = grpc.loadPackageDefinition(definition).inference;
const SERVICE = inference.GRPCInferenceService;

function client(compression) {
  const options = {};
  if (compression !== undefined) {
    options["grpc.default_compression_algorithm"] = compression; // 1 deflate, 2 gzip
  }
  return new SERVICE(target, grpc.credentials.createInsecure(), options);
}

function auth() {
  const metadata = new grpc.Metadata();
  metadata.add("authorization", `Bearer ${apiKey}`);
  return metadata;
}

function call(fn) {
  return new Promise((resolve) => {
    fn((err, reply) => resolve(err ? { code: err.code, details: err.details } : { code: 0, reply }));
  });
}

async function infer(compression) {
  const values = Float32Array.from({ length: 10 }, (_, i) => i);
  const request = {
    model_name: "dummy",
    inputs: [{ name: "b", datatype: "FP32", shape: [1, 10] }],
    raw_input_contents: [Buffer.from(values.buffer)],
  };
  const c = client(compression);
  const result = await call((cb) => c.ModelInfer(request, auth(), cb));
  c.close();
  if (result.code !== 0) return result;
  const raw = result.reply.raw_output_contents[0];
  const out = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length));
  return { code: 0, output: Array.from(out), shape: result.reply.outputs[0].shape };
}

async function main() {
  const results = {};
  const c = client();
  results.live = await call((cb) => c.ServerLive({}, cb));
  results.unauthenticated = await call((cb) => c.ServerMetadata({}, cb));
  const identity = (x) => x;
  results.unknown = await call((cb) =>
    c.makeUnaryRequest(
      "/inference.GRPCInferenceService/NoSuchMethod",
      identity,
      identity,
      Buffer.alloc(0),
      cb,
    ),
  );
  c.close();
  results.infer = await infer();
  results.infer_gzip = await infer(2);
  results.infer_deflate = await infer(1);
  process.stdout.write(JSON.stringify(results));
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err));
  process.exit(1);
});
