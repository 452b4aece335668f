import { AuthService } from '@facesearch/core';
import { Body, Controller, Delete, Get, HttpCode, Param, Post, Query } from '@nestjs/common';
import { ApiBody, ApiOperation, ApiQuery, ApiSecurity, ApiTags } from '@nestjs/swagger';
import { AdminOnly } from '../auth/auth';
import { CreateAppBody, openApiBody, PageQuery, type PageQueryT } from '../dtos/schemas';
import { ZodPipe } from '../http/zod.pipe';
import type { z } from 'zod';

@ApiTags('apps (admin key)')
@ApiSecurity('bearer')
@AdminOnly()
@Controller('v1/apps')
export class AppsController {
  constructor(private readonly auth: AuthService) {}

  @Post()
  @ApiOperation({ summary: 'Create an app; answers with its first API key (shown once)' })
  @ApiBody({ schema: openApiBody(CreateAppBody) })
  async create(@Body(new ZodPipe(CreateAppBody)) body: z.output<typeof CreateAppBody>) {
    const { app, key } = await this.auth.createApp(body);
    return { ...app, api_key: key };
  }

  @Get()
  @ApiOperation({ summary: 'List apps' })
  @ApiQuery({ name: 'limit', required: false, type: Number })
  @ApiQuery({ name: 'cursor', required: false, type: String })
  list(@Query(new ZodPipe(PageQuery)) page: PageQueryT) {
    return this.auth.listApps(page);
  }

  @Get(':app_id/keys')
  @ApiOperation({ summary: "List an app's keys (never the keys themselves)" })
  async listKeys(@Param('app_id') appId: string) {
    return { items: await this.auth.listKeys(appId) };
  }

  @Post(':app_id/keys')
  @ApiOperation({ summary: 'Create an API key for an app (shown once)' })
  createKey(@Param('app_id') appId: string) {
    return this.auth.createKey(appId);
  }

  @Delete(':app_id/keys/:key_id')
  @HttpCode(204)
  @ApiOperation({ summary: 'Revoke an API key' })
  async revokeKey(@Param('app_id') appId: string, @Param('key_id') keyId: string): Promise<void> {
    await this.auth.revokeKey(appId, keyId);
  }
}
