export * from './errors';
export * from './faces';
export * from './library';
export * from './analyzer';
export * from './config';
export * from './thread-pool';
export * from './concurrency';
export * from './cpus';
