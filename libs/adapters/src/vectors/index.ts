export { SqliteVecVectorStore, type SqliteVecVectorStoreOptions } from './sqlite-vec-store';
export { QdrantVectorStore, qdrantPointId, type QdrantVectorStoreOptions } from './qdrant-store';
