import { Controller, Get, Inject, Res } from '@nestjs/common';
import { ApiExcludeEndpoint, ApiOperation, ApiTags } from '@nestjs/swagger';
import { HealthCheck, HealthCheckService, HealthIndicatorService } from '@nestjs/terminus';
import type { Response } from 'express';
import { Public } from '../auth/auth';
import { Metrics } from '../metrics';
import { engineChecks, type Ports } from '@facesearch/runtime';
import { PORTS } from '../tokens';

const PING_TIMEOUT_MS = 3000;

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

@ApiTags('health')
@Public()
@Controller()
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly indicator: HealthIndicatorService,
    @Inject(PORTS) private readonly ports: Ports,
    private readonly metrics: Metrics,
  ) {}

  @Get('health/live')
  @ApiOperation({ summary: 'Liveness: the process answers' })
  live() {
    return { status: 'ok' };
  }

  @Get('health/ready')
  @HealthCheck()
  @ApiOperation({ summary: 'Readiness: every backing store, the queue and the engine answer' })
  ready() {
    // Distributed: library and queues are Redis, vectors Qdrant, blobs S3, and the engine is at least one
    // detector and one embedder answering their gRPC health check.
    const checks: Record<string, () => Promise<unknown>> = {
      library: () => this.ports.library.ping(),
      vectors: () => this.ports.vectors.ping(),
      blobs: () => this.ports.blobs.ping(),
      queues: () => Promise.all(Object.values(this.ports.queues).map((queue) => queue.counts())),
      ...engineChecks(this.ports.analyzer),
    };
    return this.health.check(
      Object.entries(checks).map(([name, ping]) => async () => {
        const indicator = this.indicator.check(name);
        try {
          const result = await withTimeout(ping(), PING_TIMEOUT_MS);
          return isWorkerHealth(result)
            ? indicator.up({ serving: result.serving, total: result.total })
            : indicator.up();
        } catch (err) {
          const code = (err as { code?: unknown }).code;
          return indicator.down({
            message: err instanceof Error ? err.message : String(err),
            ...(typeof code === 'string' ? { code } : {}),
          });
        }
      }),
    );
  }

  @Get('metrics')
  @ApiExcludeEndpoint()
  async prometheus(@Res() res: Response): Promise<void> {
    res.setHeader('content-type', this.metrics.registry.contentType);
    res.end(await this.metrics.registry.metrics());
  }
}

function isWorkerHealth(value: unknown): value is { serving: number; total: number } {
  return !!value && typeof value === 'object' && 'serving' in value && 'total' in value;
}
