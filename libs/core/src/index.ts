export * from './errors';
export * from './quality';
export * from './auth.service';
export * from './library.service';
export * from './recognition.service';
export * from './import.service';
export * from './upload.service';
