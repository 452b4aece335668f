import { Controller, Get, Inject, Res } from '@nestjs/common';
import { ApiExcludeEndpoint, ApiOperation, ApiTags } from '@nestjs/swagger';
import { HealthCheck, HealthCheckService, HealthIndicatorService } from '@nestjs/terminus';
import type { Response } from 'express';
import { Public } from '../auth/auth';
import { Metrics } from '../metrics';
import type { Ports } from '../ports';
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
    const analyzer = this.ports.analyzer as { ping?: () => Promise<void> };
    const checks: Record<string, () => Promise<unknown>> = {
      library: () => this.ports.library.ping(),
      vectors: () => this.ports.vectors.ping(),
      blobs: () => this.ports.blobs.ping(),
      queue: () => this.ports.importQueue.counts(),
      engine: async () => {
        if (typeof analyzer.ping === 'function') await analyzer.ping();
      },
    };
    return this.health.check(
      Object.entries(checks).map(([name, ping]) => async () => {
        const indicator = this.indicator.check(name);
        try {
          await withTimeout(ping(), PING_TIMEOUT_MS);
          return indicator.up();
        } catch (err) {
          return indicator.down({ message: err instanceof Error ? err.message : String(err) });
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
