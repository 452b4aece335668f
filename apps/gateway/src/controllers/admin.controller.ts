import { ReindexService } from '@facesearch/core';
import { Body, Controller, Get, HttpCode, Post } from '@nestjs/common';
import { ApiBody, ApiOperation, ApiSecurity, ApiTags } from '@nestjs/swagger';
import type { z } from 'zod';
import { AdminOnly } from '../auth/auth';
import { openApiBody, ReindexBody } from '../dtos/schemas';
import { ZodPipe } from '../http/zod.pipe';

@ApiTags('admin (admin key)')
@ApiSecurity('bearer')
@AdminOnly()
@Controller('v1/admin')
export class AdminController {
  constructor(private readonly reindex: ReindexService) {}

  @Post('reindex')
  @HttpCode(202)
  @ApiOperation({
    summary: 'Re-embed stored faces from their stored images with the running model',
    description:
      'After a model change, faces indexed with another model are not searchable until reindexed. Runs in the ' +
      'background (one run at a time, 409 `reindex_running` otherwise); follow it with GET. `all: true` re-embeds ' +
      'every face, not only those stored with another model.',
  })
  @ApiBody({ schema: openApiBody(ReindexBody) })
  start(@Body(new ZodPipe(ReindexBody)) body: z.output<typeof ReindexBody>) {
    return this.reindex.start({ all: body.all });
  }

  @Get('reindex')
  @ApiOperation({ summary: 'Progress of the current or last reindex run' })
  status() {
    return this.reindex.status();
  }
}
