// A tiny thread script for thread-pool.test.ts. Plain JS, because a worker thread runs compiled code: it loads
// @facesearch/common from dist/ (build libs/common first).
const { FaceSearchError } = require('../dist/errors');
const { serveThread } = require('../dist/thread-pool');

serveThread((data) => {
  // starts[0] counts start-ups; a start-up fails once the count exceeds starts[1] (0: no limit).
  const { starts, exitAtStart } = data;
  const started = Atomics.add(starts, 0, 1) + 1;
  const limit = Atomics.load(starts, 1);
  if (exitAtStart) process.exit(3);
  if (limit > 0 && started > limit) throw new FaceSearchError('model_missing', 'no model here', 503);
  return {
    info: { started },
    handle(request) {
      switch (request.op) {
        case 'echo':
          return request.value;
        case 'sleep':
          return new Promise((resolve) => setTimeout(() => resolve(started), request.ms));
        case 'sleepThenMark':
          // Marks its slot of the shared array when done: seen by the test even after the thread has exited.
          return new Promise((resolve) =>
            setTimeout(() => {
              Atomics.store(request.marks, request.slot, 1);
              resolve(started);
            }, request.ms),
          );
        case 'spin': {
          // Holds the thread's event loop as a long native call would.
          const until = Date.now() + request.ms;
          while (Date.now() < until) {}
          return started;
        }
        case 'fail':
          throw new FaceSearchError(request.code, 'refused', request.status, true).retryAfter(7);
        case 'failPlain':
          return Promise.reject(Object.assign(new Error('busy'), { code: request.code }));
        case 'function':
          return () => 1;
        default:
          throw new Error(`unknown op ${request.op}`);
      }
    },
  };
});
