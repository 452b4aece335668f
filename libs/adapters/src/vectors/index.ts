export { SqliteVecVectorStore, type SqliteVecVectorStoreOptions } from './sqlite-vec-store';
export { QdrantVectorStore, qdrantPointId, qdrantScope, type QdrantVectorStoreOptions } from './qdrant-store';
