export { MAX_PAGE_LIMIT } from './pagination';
export {
  DEFAULT_LIBRARY_KEY_PREFIX,
  RedisLibraryRepository,
  type RedisLibraryOptions,
} from './redis-library-repository';
export { LIBRARY_SCHEMA_VERSION, SqliteLibraryRepository } from './sqlite-library-repository';
