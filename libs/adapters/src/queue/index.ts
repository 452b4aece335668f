export * from './shared';
export * from './memory-job-queue';
export * from './bullmq-job-queue';
