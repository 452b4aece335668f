import type { FaceSearchConfig } from '@facesearch/common';
import { checkIdempotencyKey, LibraryService } from '@facesearch/core';
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
  Res,
  UploadedFiles,
  UseInterceptors,
} from '@nestjs/common';
import { ApiBody, ApiHeader, ApiConsumes, ApiOperation, ApiQuery, ApiSecurity, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import type { z } from 'zod';
import { AppId } from '../auth/auth';
import { EnrolBody, openApiBody } from '../dtos/schemas';
import { FaceImageService } from '../console/face-images';
import { faceView } from '../dtos/views';
import { imageFrom, requireImage, type UploadedFiles as Files } from '../http/images';
import { Multipart } from '../http/multipart';
import { ZodPipe } from '../http/zod.pipe';
import { CONFIG } from '../tokens';

@ApiTags('faces')
@ApiSecurity('bearer')
@Controller('v1/groups/:group_id/users/:user_id/faces')
export class FacesController {
  constructor(
    private readonly library: LibraryService,
    private readonly faceImages: FaceImageService,
    @Inject(CONFIG) private readonly config: FaceSearchConfig,
  ) {}

  @Post()
  @UseInterceptors(Multipart([{ name: 'image', maxCount: 1 }]))
  @ApiOperation({ summary: 'Enrol a face (the largest in the image); creates the group and user if needed' })
  @ApiHeader({
    name: 'Idempotency-Key',
    required: false,
    description: 'Retrying with the same key (same app) returns the first result instead of creating another.',
  })
  @ApiConsumes('multipart/form-data', 'application/json')
  @ApiBody({ schema: openApiBody(EnrolBody, ['image']) })
  async enrol(
    @AppId() appId: string,
    @Param('group_id') groupId: string,
    @Param('user_id') userId: string,
    @UploadedFiles() files: Files | undefined,
    @Body(new ZodPipe(EnrolBody)) body: z.output<typeof EnrolBody>,
    @Headers('idempotency-key') idempotencyKey: string | undefined,
  ) {
    const image = requireImage(
      imageFrom(files, body, 'image', 'image_base64', this.config.maxImageBytes),
      'image',
      'image_base64',
    );
    const result = await this.library.enrol(appId, groupId, userId, {
      image,
      user_info: body.user_info,
      quality_control: body.quality_control,
      mode: body.mode,
      idempotency_key: checkIdempotencyKey(idempotencyKey),
    });
    return { ...faceView(result.face), image: result.image, replaced_face_ids: result.replaced_face_ids };
  }

  @Get()
  @ApiOperation({ summary: "List a user's faces" })
  async list(@AppId() appId: string, @Param('group_id') groupId: string, @Param('user_id') userId: string) {
    return { items: (await this.library.listFaces(appId, groupId, userId)).map(faceView) };
  }

  @Get(':face_id/image')
  @ApiOperation({ summary: 'The image a face was enrolled from; `crop=1`: a square JPEG thumbnail of the face' })
  @ApiQuery({ name: 'crop', required: false, enum: ['0', '1'] })
  async image(
    @AppId() appId: string,
    @Param('group_id') groupId: string,
    @Param('user_id') userId: string,
    @Param('face_id') faceId: string,
    @Query('crop') crop: string | undefined,
    @Res() res: Response,
  ): Promise<void> {
    const image = await this.faceImages.get(appId, groupId, userId, faceId, crop === '1' || crop === 'true');
    res.setHeader('content-type', image.contentType);
    res.setHeader('cache-control', 'private, max-age=3600');
    res.end(image.bytes);
  }

  @Delete(':face_id')
  @HttpCode(204)
  @ApiOperation({ summary: 'Delete a face (record, vector and image)' })
  async remove(
    @AppId() appId: string,
    @Param('group_id') groupId: string,
    @Param('user_id') userId: string,
    @Param('face_id') faceId: string,
  ): Promise<void> {
    await this.library.deleteFace(appId, groupId, userId, faceId);
  }
}
