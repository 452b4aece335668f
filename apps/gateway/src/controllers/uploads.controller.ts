import { type FaceSearchConfig, FaceSearchError } from '@facesearch/common';
import { checkId, UploadService, uploadKey } from '@facesearch/core';
import { Controller, HttpCode, Inject, Param, Post, Put, Query, Req } from '@nestjs/common';
import { ApiOperation, ApiSecurity, ApiTags } from '@nestjs/swagger';
import type { Request } from 'express';
import { AppId, Public } from '../auth/auth';
import { CONFIG } from '../tokens';

@ApiTags('imports')
@Controller('v1/uploads')
export class UploadsController {
  constructor(
    private readonly uploads: UploadService,
    @Inject(CONFIG) private readonly config: FaceSearchConfig,
  ) {}

  @Post()
  @ApiSecurity('bearer')
  @ApiOperation({
    summary: 'Get a URL to PUT one image to; pass the returned object_key as an import item',
    description: 'The URL is presigned by the blob store (S3) or, in embedded mode, a signed gateway URL.',
  })
  async create(@AppId() appId: string, @Req() req: Request) {
    const ticket = await this.uploads.create(appId);
    let url = ticket.presigned_url;
    if (!url) {
      const base = (this.config.publicUrl ?? `${req.protocol}://${req.get('host')}`).replace(/\/+$/, '');
      const token = this.uploads.sign(ticket.object_key, new Date(ticket.expires_at));
      url = `${base}/v1/uploads/${appId}/${ticket.upload_id}?token=${encodeURIComponent(token)}`;
    }
    return { object_key: ticket.object_key, upload_url: url, method: 'PUT', expires_at: ticket.expires_at };
  }

  /** The gateway's own upload target (embedded mode); the signed token is the authorisation. */
  @Put(':app_id/:upload_id')
  @Public()
  @HttpCode(204)
  @ApiOperation({ summary: 'Upload target for gateway-signed upload URLs (body: the image bytes)' })
  async put(
    @Param('app_id') appId: string,
    @Param('upload_id') uploadId: string,
    @Query('token') token: string | undefined,
    @Req() req: Request,
  ): Promise<void> {
    const key = uploadKey(checkId('app_id', appId), checkId('upload_id', uploadId));
    this.uploads.verify(key, token);
    const body: unknown = req.body;
    if (!Buffer.isBuffer(body)) throw new FaceSearchError('image_empty', 'The upload is empty (0 bytes).', 400);
    await this.uploads.store(key, body, req.get('content-type') ?? undefined);
  }
}
