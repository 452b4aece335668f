export { checkBlobKey, checkBlobPrefix } from './keys';
export { FsBlobStore } from './fs-blob-store';
export { S3BlobStore, type S3BlobStoreOptions } from './s3-blob-store';
