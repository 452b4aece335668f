import { type FaceSearchConfig, FaceSearchError } from '@facesearch/common';
import { checkIdempotencyKey, type ImportItemInput, ImportService } from '@facesearch/core';
import {
  Body,
  Controller,
  Delete,
  Get,
  Headers,
  HttpCode,
  Inject,
  Param,
  Post,
  Query,
  UploadedFiles,
  UseInterceptors,
} from '@nestjs/common';
import { ApiBody, ApiHeader, ApiConsumes, ApiOperation, ApiQuery, ApiSecurity, ApiTags } from '@nestjs/swagger';
import type { z } from 'zod';
import { AppId } from '../auth/auth';
import { CreateImportBody, ImportItemsQuery, openApiBody } from '../dtos/schemas';
import { decodeBase64Image, type UploadedFiles as Files } from '../http/images';
import { Multipart } from '../http/multipart';
import { ZodPipe } from '../http/zod.pipe';
import { CONFIG } from '../tokens';

export const MAX_IMPORT_FILES = 1000;

@ApiTags('imports')
@ApiSecurity('bearer')
@Controller('v1/imports')
export class ImportsController {
  constructor(
    private readonly imports: ImportService,
    @Inject(CONFIG) private readonly config: FaceSearchConfig,
  ) {}

  @Post()
  @HttpCode(202)
  @UseInterceptors(Multipart([{ name: 'files', maxCount: MAX_IMPORT_FILES }]))
  @ApiOperation({
    summary: 'Start a bulk import into a group',
    description:
      'Each item is a user_id and one image: `file` (the name of a file sent in the multipart field `files`), ' +
      '`object_key` (uploaded before through POST /v1/uploads) or `image_base64`. In multipart requests `items` ' +
      'is a JSON text field. Answers 202 with the import; poll GET /v1/imports/{import_id}.',
  })
  @ApiHeader({
    name: 'Idempotency-Key',
    required: false,
    description: 'Retrying with the same key (same app) returns the first result instead of creating another.',
  })
  @ApiConsumes('multipart/form-data', 'application/json')
  @ApiBody({ schema: openApiBody(CreateImportBody, [], ['files']) })
  create(
    @AppId() appId: string,
    @UploadedFiles() files: Files | undefined,
    @Body(new ZodPipe(CreateImportBody)) body: z.output<typeof CreateImportBody>,
    @Headers('idempotency-key') idempotencyKey: string | undefined,
  ) {
    const byName = new Map<string, Express.Multer.File>();
    for (const f of files?.files ?? []) {
      if (byName.has(f.originalname)) {
        throw new FaceSearchError('invalid_request', `files: two files are named '${f.originalname}'`, 400);
      }
      byName.set(f.originalname, f);
    }
    const items: ImportItemInput[] = body.items.map((item, i) => {
      if (item.file !== undefined) {
        const file = byName.get(item.file);
        if (!file)
          throw new FaceSearchError(
            'invalid_request',
            `items[${i}].file: no file named '${item.file}' in \`files\``,
            400,
          );
        return {
          user_id: item.user_id,
          name: item.name ?? file.originalname,
          source: { kind: 'bytes', data: file.buffer },
        };
      }
      if (item.object_key !== undefined) {
        return { user_id: item.user_id, name: item.name ?? null, source: { kind: 'object', key: item.object_key } };
      }
      const data = decodeBase64Image(
        `items[${i}].image_base64`,
        item.image_base64 as string,
        this.config.maxImageBytes,
      );
      return { user_id: item.user_id, name: item.name ?? null, source: { kind: 'bytes', data } };
    });
    return this.imports.create(appId, {
      group_id: body.group_id,
      quality_control: body.quality_control,
      items,
      idempotency_key: checkIdempotencyKey(idempotencyKey),
    });
  }

  @Get(':import_id')
  @ApiOperation({ summary: 'Status and progress of an import' })
  get(@AppId() appId: string, @Param('import_id') importId: string) {
    return this.imports.get(appId, importId);
  }

  @Get(':import_id/items')
  @ApiOperation({ summary: 'Per-item results (face_id or error), optionally filtered by status' })
  @ApiQuery({ name: 'status', required: false, enum: ['pending', 'running', 'succeeded', 'failed', 'cancelled'] })
  @ApiQuery({ name: 'limit', required: false, type: Number })
  @ApiQuery({ name: 'cursor', required: false, type: String })
  items(
    @AppId() appId: string,
    @Param('import_id') importId: string,
    @Query(new ZodPipe(ImportItemsQuery)) query: z.output<typeof ImportItemsQuery>,
  ) {
    return this.imports.listItems(appId, importId, query.status, { limit: query.limit, cursor: query.cursor });
  }

  @Delete(':import_id')
  @ApiOperation({ summary: 'Cancel an import (items not started are cancelled)' })
  cancel(@AppId() appId: string, @Param('import_id') importId: string) {
    return this.imports.cancel(appId, importId);
  }
}
