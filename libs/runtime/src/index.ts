export * from './analyzer';
export * from './guarded-queue';
export * from './health';
export * from './lifecycle';
export * from './logger';
export * from './metrics';
export * from './ports';
export * from './worker';
