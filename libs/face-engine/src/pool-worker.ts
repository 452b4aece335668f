/**
 * One engine thread of EnginePool: opens its own FaceEngine (own ONNX sessions) and answers the pool's calls.
 * onnxruntime-node runs a session synchronously on the calling JS thread, so each of these threads keeps one
 * core busy without blocking the process's main thread.
 */
import { serveThread } from '@facesearch/common';
import { FaceEngine, type FaceEngineOptions } from './engine';
import type { EngineCall, EngineInfo } from './pool';

serveThread<EngineCall, unknown, EngineInfo>(async (options) => {
  const engine = await FaceEngine.create(options as FaceEngineOptions);
  const { modelId, embeddingDim, detectorModelId, matchThreshold } = engine;
  return { info: { modelId, embeddingDim, detectorModelId, matchThreshold }, handle: (call) => run(engine, call) };
});

function run(engine: FaceEngine, call: EngineCall): Promise<unknown> {
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
