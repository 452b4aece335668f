import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** The labelled photos beside the project (never copied into it). */
export const TESTDATA = resolve(__dirname, '..', '..', '..', '..', 'shared', 'testdata');
export const HAS_TESTDATA = existsSync(join(TESTDATA, 'faces.tsv'));
export const NO_TESTDATA_REASON = `../shared/testdata not found at ${TESTDATA}: real-photo tests skipped`;

/** Group photos shipped in the @vladmandic/face-api npm package, fetched by `pnpm install`. */
export const FIXTURES = resolve(__dirname, '..', '..', '..', '.fixtures');
export const fixture = (name: string) => readFileSync(join(FIXTURES, name));
export const HAS_FIXTURES = existsSync(join(FIXTURES, 'face-api-sample1.jpg'));

export const testdata = (path: string) => readFileSync(join(TESTDATA, path));
