export * from './vectors';
export * from './blobs';
export * from './queue';
export * from './library';
