import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { FaceSearchError } from '@facesearch/common';
import { Controller, Get, Param, Res } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import type { Response } from 'express';
import { Public } from '../auth/auth';

/** public/ sits at the package root: one level above dist/, two above src/console/ (tests run from src). */
export function consoleDir(): string {
  const candidates = [resolve(__dirname, '..', '..', 'public'), resolve(__dirname, '..', 'public')];
  return candidates.find((dir) => existsSync(join(dir, 'index.html'))) ?? candidates[0];
}

const notFound = (file: string) => new FaceSearchError('not_found', `No console file '${file}'.`, 404);
const ASSET = /^[a-z0-9-]+\.(js|css|svg|png|ico)$/;
const TYPES: Record<string, string> = {
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
  svg: 'image/svg+xml',
  png: 'image/png',
  ico: 'image/x-icon',
};

/** The web console: static files, no build step. The API key is entered in the page, so the files are public. */
@ApiExcludeController()
@Public()
@Controller()
export class ConsoleController {
  private readonly dir = consoleDir();

  @Get()
  index(@Res() res: Response): void {
    this.send(res, 'index.html', 'text/html; charset=utf-8');
  }

  @Get('console/:file')
  asset(@Param('file') file: string, @Res() res: Response): void {
    const m = ASSET.exec(file);
    if (!m) throw notFound(file);
    this.send(res, file, TYPES[m[1]]);
  }

  private send(res: Response, file: string, type: string): void {
    const path = join(this.dir, file);
    if (!existsSync(path)) throw notFound(file);
    res.setHeader('content-type', type);
    res.setHeader('cache-control', 'no-cache');
    // Everything is same-origin; nothing may load from elsewhere.
    res.setHeader(
      'content-security-policy',
      "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; connect-src 'self'",
    );
    res.setHeader('x-content-type-options', 'nosniff');
    res.sendFile(path);
  }
}
