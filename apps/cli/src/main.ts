#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { cosineSimilarity, FaceSearchError, isFaceSearchError, similarityToScore } from '@facesearch/common';
import { evaluateFolder, FaceEngine, type FaceEngineOptions } from '@facesearch/face-engine';
import { importFolder, printSummary } from './import';
import { reindexService } from './reindex';

const USAGE = `Usage: pnpm facesearch <command> [options]

Commands:
  detect IMAGE              faces with box, landmarks, score and quality
  compare IMAGE_A IMAGE_B   similarity, score 0-100 and match decision of the largest faces
  eval DIR                  verification and 1:N search accuracy over a folder of identity subfolders
  import DIR --group G      upload a folder to a running service as one bulk import (subfolder name = user id);
                            re-run to resume: only files not yet imported are sent again
  reindex [--all]           re-embed stored faces with the service's running model (after a model change),
                            following the run to the end; needs the admin key

Options:
  --json                    the last line of output is one JSON object
  --max-faces N             detect: keep at most N faces (default 20)
  --threshold T             compare/eval: cosine match threshold (default: the model's calibrated one)
  --group G                 import: the group to import into
  --url URL                 import: the service (default FACESEARCH_URL or http://127.0.0.1:3000)
  --key KEY                 import: an app API key (default FACESEARCH_API_KEY)
  --concurrency N           import: parallel uploads (default 4)
  --no-wait                 import: submit and exit; run again to follow the import
  --all                     reindex: every face, not only those stored with another model
                            (reindex takes --url and --key too; default key FACESEARCH_ADMIN_KEY)
  -h, --help

Exit codes: 0 success; 1 a command failed (import: some files failed); 2 usage or connection errors (import).`;

const OPTIONS = {
  json: { type: 'boolean', default: false },
  'max-faces': { type: 'string' },
  threshold: { type: 'string' },
  group: { type: 'string' },
  url: { type: 'string' },
  key: { type: 'string' },
  concurrency: { type: 'string' },
  'no-wait': { type: 'boolean', default: false },
  all: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

async function main(argv: string[]): Promise<number> {
  const parse = () => parseArgs({ args: argv, allowPositionals: true, options: OPTIONS });
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse();
  } catch (err) {
    const message = `${(err as Error).message}. Run with --help for the options.`;
    if (argv.includes('--json')) console.log(JSON.stringify({ error: { code: 'usage', message } }));
    else console.error(`error usage: ${message}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const json = values.json ?? false;
  const [command, ...args] = positionals;
  if (values.help || !command) {
    console.log(USAGE);
    return command || values.help ? 0 : 2;
  }
  try {
    switch (command) {
      case 'detect':
        return await detect(
          requireArgs(args, 1, 'detect IMAGE')[0],
          json,
          optionalNumber(values['max-faces'], '--max-faces'),
        );
      case 'compare': {
        const [a, b] = requireArgs(args, 2, 'compare IMAGE_A IMAGE_B');
        return await compare(a, b, json, optionalNumber(values.threshold, '--threshold'));
      }
      case 'import':
        return await runImport(requireArgs(args, 1, 'import DIR --group G')[0], values, json);
      case 'reindex': {
        requireArgs(args, 0, 'reindex [--all] [--url URL] [--key ADMIN_KEY]');
        const { exitCode, summary } = await reindexService({
          url: values.url ?? process.env.FACESEARCH_URL ?? 'http://127.0.0.1:3000',
          key: values.key ?? process.env.FACESEARCH_ADMIN_KEY ?? '',
          all: values.all ?? false,
          json,
          pollMs: 1000,
          stdout: process.stdout,
        });
        if (json) console.log(JSON.stringify(summary));
        return exitCode;
      }
      case 'eval':
        return await evaluate(
          requireArgs(args, 1, 'eval DIR')[0],
          json,
          optionalNumber(values.threshold, '--threshold'),
        );
      default:
        throw new FaceSearchError('usage', `Unknown command '${command}'. Run with --help for the list.`);
    }
  } catch (err) {
    const error = isFaceSearchError(err)
      ? { code: err.code, message: err.message }
      : { code: 'internal', message: err instanceof Error ? err.message : String(err) };
    if (json) console.log(JSON.stringify({ error }));
    else console.error(`error ${error.code}: ${error.message}`);
    // import: any error that stops the run (usage, connection, the service refusing) is 2; failed files are 1.
    return command === 'import' || command === 'reindex' ? 2 : 1;
  }
}

async function runImport(dir: string, values: { [K in keyof typeof OPTIONS]?: unknown }, json: boolean) {
  const concurrency = optionalNumber(values.concurrency as string | undefined, '--concurrency') ?? 4;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 64) {
    throw new FaceSearchError('usage', '--concurrency takes a whole number from 1 to 64');
  }
  const { exitCode, summary } = await importFolder({
    dir: readDir(dir),
    group: (values.group as string | undefined) ?? '',
    url: (values.url as string | undefined) ?? process.env.FACESEARCH_URL ?? 'http://127.0.0.1:3000',
    key: (values.key as string | undefined) ?? process.env.FACESEARCH_API_KEY ?? '',
    json,
    wait: !values['no-wait'],
    concurrency,
    pollMs: 500,
    stdout: process.stdout,
    stderr: process.stderr,
  });
  if (json) console.log(JSON.stringify(summary));
  else printSummary(summary, process.stdout);
  return exitCode;
}

function requireArgs(args: string[], count: number, usage: string): string[] {
  if (args.length !== count) throw new FaceSearchError('usage', `Expected: facesearch ${usage}`);
  return args;
}

function optionalNumber(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n)) throw new FaceSearchError('usage', `${name} takes a number, got '${value}'`);
  return n;
}

/** The same model settings as the service: MODEL_DIR, DETECTOR_MANIFEST, EMBEDDER_MANIFEST. */
function engineOptions(extra: FaceEngineOptions = {}): FaceEngineOptions {
  const env = (name: string) => process.env[name]?.trim() || undefined;
  return {
    modelDir: env('MODEL_DIR'),
    detectorManifest: env('DETECTOR_MANIFEST'),
    embedderManifest: env('EMBEDDER_MANIFEST'),
    ...extra,
  };
}

/** Paths are relative to where the user ran `pnpm`, not to the repository root pnpm runs scripts in. */
function readInput(path: string): Buffer {
  const full = resolve(process.env.INIT_CWD ?? process.cwd(), path);
  try {
    return readFileSync(full);
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message;
    throw new FaceSearchError('file_unreadable', `Cannot read ${path}: ${reason}`);
  }
}

function readDir(path: string): string {
  return resolve(process.env.INIT_CWD ?? process.cwd(), path);
}

async function detect(path: string, json: boolean, maxFaces?: number): Promise<number> {
  const engine = await FaceEngine.create(engineOptions());
  try {
    const result = await engine.detect(readInput(path), { maxFaces });
    if (json) {
      console.log(JSON.stringify(result));
      return 0;
    }
    console.log(
      `${path}: ${result.image.format} ${result.image.width}x${result.image.height}, ${result.faces.length} face(s)`,
    );
    result.faces.forEach((f, i) => {
      const { box: b, quality: q, landmarks: l } = f;
      console.log(
        `  #${i + 1} box ${b.x},${b.y} ${b.width}x${b.height}  score ${f.score}  quality ${q.level} (size ${q.size}, blur ${q.blur}, yaw ${q.yaw}, pitch ${q.pitch}, roll ${q.roll})`,
      );
      console.log(
        `     eyes (${l.left_eye.x},${l.left_eye.y}) (${l.right_eye.x},${l.right_eye.y})  nose (${l.nose.x},${l.nose.y})  mouth (${l.mouth.x},${l.mouth.y})`,
      );
    });
    return 0;
  } finally {
    await engine.close();
  }
}

async function compare(pathA: string, pathB: string, json: boolean, threshold?: number): Promise<number> {
  const engine = await FaceEngine.create(engineOptions({ matchThreshold: threshold }));
  try {
    const [a, b] = [
      await engine.analyze(readInput(pathA), { maxFaces: 1 }),
      await engine.analyze(readInput(pathB), { maxFaces: 1 }),
    ];
    for (const [path, r] of [
      [pathA, a],
      [pathB, b],
    ] as const) {
      if (r.faces.length === 0) throw new FaceSearchError('no_face', `No face found in ${path}.`, 422);
    }
    const similarity = Math.round(cosineSimilarity(a.faces[0].embedding, b.faces[0].embedding) * 10000) / 10000;
    const result = {
      similarity,
      score: similarityToScore(similarity, engine.matchThreshold),
      match: similarity >= engine.matchThreshold,
      threshold: engine.matchThreshold,
      model_id: engine.modelId,
      box_a: a.faces[0].box,
      box_b: b.faces[0].box,
    };
    if (json) console.log(JSON.stringify(result));
    else
      console.log(
        `similarity ${result.similarity}  score ${result.score}/100  ${result.match ? 'MATCH' : 'no match'} (cosine threshold ${result.threshold}, ${result.model_id})`,
      );
    return 0;
  } finally {
    await engine.close();
  }
}

async function evaluate(dir: string, json: boolean, threshold?: number): Promise<number> {
  const engine = await FaceEngine.create(engineOptions({ matchThreshold: threshold }));
  try {
    const r = await evaluateFolder(engine, readDir(dir));
    if (!json) {
      const pct = (x: number) => `${(x * 100).toFixed(2)}%`;
      console.log(`images read        ${r.images} (${r.identities} identities)`);
      console.log(`no face            ${r.no_face}`);
      console.log(
        `errors             ${
          Object.entries(r.errors)
            .map(([c, n]) => `${c}: ${n}`)
            .join(', ') || 'none'
        }`,
      );
      console.log(`verification       ${r.same_pairs} same + ${r.different_pairs} different pairs`);
      console.log(`  accuracy         ${pct(r.accuracy)} at threshold ${r.threshold}`);
      console.log(`  best threshold   ${r.best_threshold} (${pct(r.best_accuracy)})`);
      console.log(`  TAR @ FAR 1e-2   ${pct(r.tar_at_far_1e2)}   (FAR over all ${r.impostor_pairs} different pairs)`);
      console.log(`  TAR @ FAR 1e-3   ${pct(r.tar_at_far_1e3)}   (threshold ${r.threshold_at_far_1e3})`);
      console.log(`1:N search rank-1  ${pct(r.rank1)} of ${r.rank1_searches} searches`);
      const t = r.ms_per_image;
      console.log(
        `ms per image       decode ${t.decode}, detect ${t.detect}, align ${t.align}, embed ${t.embed}, total ${t.total} (medians)`,
      );
      for (const f of r.failures) console.log(`  failed: ${f.path} (${f.code})`);
    }
    if (json) console.log(JSON.stringify(r));
    return 0;
  } finally {
    await engine.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    console.error(`error internal: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  },
);
