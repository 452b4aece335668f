/**
 * One reader thread of SqliteVecVectorStore: its own read-only connection to the store's database file, answering
 * KNN searches. better-sqlite3 runs a query synchronously on the calling JS thread, so a long vector scan here
 * leaves the process's main thread free. WAL lets this connection read while the main connection writes, and
 * each search (its own read transaction) sees every write committed before it started.
 */
// The pool's file alone, not the package index: the index loads the config schema (zod), slow to start per thread.
import { serveThread } from '@facesearch/common/dist/thread-pool';
import Database from 'better-sqlite3';
import { type KnnQuery, loadVecExtension, prepareKnn, runKnn, type SearchWorkerData } from './sqlite-vec-knn';

serveThread((data) => {
  const { path, table } = data as SearchWorkerData;
  let knn: Database.Statement;
  try {
    const db = new Database(path, { readonly: true, fileMustExist: true });
    loadVecExtension(db);
    knn = prepareKnn(db, table);
  } catch (err) {
    const { message, code } = err as { message?: string; code?: unknown };
    const error = new Error(`vector search thread could not open ${path}: ${message ?? err}`);
    throw typeof code === 'string' ? Object.assign(error, { code }) : error;
  }
  return { info: undefined, handle: (query: KnnQuery) => runKnn(knn, query) };
});
