export { SqliteVecVectorStore, type SqliteVecVectorStoreOptions } from './sqlite-vec-store';
export {
  QdrantVectorStore,
  qdrantPointId,
  qdrantScope,
  type QdrantVectorStoreOptions,
  SCAN_ALWAYS_KB,
} from './qdrant-store';
