export type * as pb from './messages';
export * from './load';
export * from './errors';
export * from './convert';
export * from './health';
export * from './server';
export * from './client';
export * from './analyzer';
