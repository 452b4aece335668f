/**
 * One reader thread of SqliteVecVectorStore: its own read-only connection to the store's database file, answering
 * KNN searches. better-sqlite3 runs a query synchronously on the calling JS thread, so a long vector scan here
 * leaves the process's main thread free. WAL lets this connection read while the main connection writes, and
 * each search (its own read transaction) sees every write committed before it started.
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import {
  type SearchCall,
  type SearchReply,
  type SearchWorkerData,
  loadVecExtension,
  prepareKnn,
  runKnn,
  serializeError,
} from './sqlite-vec-knn';

function main(): void {
  const port = parentPort;
  if (!port) throw new Error('sqlite-vec-search-worker must run in a worker thread');
  const { path, table } = workerData as SearchWorkerData;
  let knn: Database.Statement;
  try {
    const db = new Database(path, { readonly: true, fileMustExist: true });
    loadVecExtension(db);
    knn = prepareKnn(db, table);
  } catch (err) {
    port.postMessage({ type: 'failed', error: serializeError(err) } satisfies SearchReply);
    return;
  }
  port.on('message', (call: SearchCall) => {
    let reply: SearchReply;
    try {
      reply = { type: 'result', id: call.id, hits: runKnn(knn, call) };
    } catch (err) {
      reply = { type: 'error', id: call.id, error: serializeError(err) };
    }
    port.postMessage(reply);
  });
  port.postMessage({ type: 'ready' } satisfies SearchReply);
}

main();
