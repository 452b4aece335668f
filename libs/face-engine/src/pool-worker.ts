/**
 * One engine thread of EnginePool: opens its own FaceEngine (own ONNX sessions) and answers the pool's calls.
 * onnxruntime-node runs a session synchronously on the calling JS thread, so each of these threads keeps one
 * core busy without blocking the process's main thread.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { FaceEngine, type FaceEngineOptions } from './engine';
import { type EngineCall, type EngineReply, serializeError } from './pool-protocol';

async function main(): Promise<void> {
  const port = parentPort;
  if (!port) throw new Error('pool-worker must run in a worker thread');
  let engine: FaceEngine;
  try {
    engine = await FaceEngine.create(workerData as FaceEngineOptions);
  } catch (err) {
    port.postMessage({ type: 'failed', error: serializeError(err) } satisfies EngineReply);
    return;
  }
  port.postMessage({
    type: 'ready',
    info: {
      modelId: engine.modelId,
      embeddingDim: engine.embeddingDim,
      detectorModelId: engine.detectorModelId,
      matchThreshold: engine.matchThreshold,
    },
  } satisfies EngineReply);

  port.on('message', (call: EngineCall) => {
    if (call.op === 'close') {
      void engine.close().finally(() => port.close());
      return;
    }
    run(engine, call).then(
      (result) => port.postMessage({ type: 'result', id: call.id, result } satisfies EngineReply),
      (err) => port.postMessage({ type: 'error', id: call.id, error: serializeError(err) } satisfies EngineReply),
    );
  });
}

function run(engine: FaceEngine, call: Exclude<EngineCall, { op: 'close' }>): Promise<unknown> {
  switch (call.op) {
    case 'detect':
      return engine.detect(call.image, call.options);
    case 'detectAligned':
      return engine.detectAligned(call.image, call.options);
    case 'analyze':
      return engine.analyze(call.image, call.options);
    case 'embed':
      return engine.embed(call.crops);
  }
}

void main();
