import type { FaceSearchConfig } from '@facesearch/common';
import { RecognitionService } from '@facesearch/core';
import { Body, Controller, HttpCode, Inject, Post, Res, UploadedFiles, UseInterceptors } from '@nestjs/common';
import { ApiBody, ApiConsumes, ApiOperation, ApiSecurity, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import type { z } from 'zod';
import { AppId } from '../auth/auth';
import { CompareBody, DetectBody, openApiBody, SearchBody } from '../dtos/schemas';
import { imageFrom, requireImage, type UploadedFiles as Files } from '../http/images';
import { Multipart } from '../http/multipart';
import { withServerTiming } from '../http/server-timing';
import { ZodPipe } from '../http/zod.pipe';
import { Metrics } from '../metrics';
import { CONFIG } from '../tokens';

@ApiTags('recognition')
@ApiSecurity('bearer')
@Controller('v1')
export class RecognitionController {
  constructor(
    private readonly recognition: RecognitionService,
    private readonly metrics: Metrics,
    @Inject(CONFIG) private readonly config: FaceSearchConfig,
  ) {}

  /** Hands an answered request's stages to the stage histogram. */
  private record(route: string) {
    return (stages: Map<string, number>) => this.metrics.observeStages(route, stages);
  }

  @Post('detect')
  @HttpCode(200)
  @UseInterceptors(Multipart([{ name: 'image', maxCount: 1 }]))
  @ApiOperation({ summary: 'Detect faces: box, landmarks, score, quality, and the image size' })
  @ApiConsumes('multipart/form-data', 'application/json')
  @ApiBody({ schema: openApiBody(DetectBody, ['image']) })
  async detect(
    @AppId() _appId: string,
    @UploadedFiles() files: Files | undefined,
    @Body(new ZodPipe(DetectBody)) body: z.output<typeof DetectBody>,
    @Res({ passthrough: true }) res: Response,
  ) {
    const image = requireImage(
      imageFrom(files, body, 'image', 'image_base64', this.config.maxImageBytes),
      'image',
      'image_base64',
    );
    const result = await withServerTiming(
      res,
      (timings) => this.recognition.detect(image, body.max_faces, timings),
      this.record('detect'),
    );
    return { image: result.image, face_num: result.faces.length, faces: result.faces };
  }

  @Post('compare')
  @HttpCode(200)
  @UseInterceptors(
    Multipart([
      { name: 'image_a', maxCount: 1 },
      { name: 'image_b', maxCount: 1 },
    ]),
  )
  @ApiOperation({ summary: '1:1 compare: image_a with image_b, or with an enrolled face_id_b' })
  @ApiConsumes('multipart/form-data', 'application/json')
  @ApiBody({ schema: openApiBody(CompareBody, ['image_a', 'image_b']) })
  async compare(
    @AppId() appId: string,
    @UploadedFiles() files: Files | undefined,
    @Body(new ZodPipe(CompareBody)) body: z.output<typeof CompareBody>,
    @Res({ passthrough: true }) res: Response,
  ) {
    const max = this.config.maxImageBytes;
    const imageA = requireImage(imageFrom(files, body, 'image_a', 'image_a_base64', max), 'image_a', 'image_a_base64');
    const imageB = imageFrom(files, body, 'image_b', 'image_b_base64', max);
    if (!imageB && body.face_id_b === undefined) {
      requireImage(undefined, 'image_b', 'image_b_base64'); // throws, naming the field
    }
    return withServerTiming(
      res,
      (timings) =>
        this.recognition.compare(
          appId,
          {
            image_a: imageA,
            image_b: body.face_id_b === undefined ? imageB : undefined,
            face_id_b: body.face_id_b,
            match_threshold: body.match_threshold,
          },
          timings,
        ),
      this.record('compare'),
    );
  }

  @Post('search')
  @HttpCode(200)
  @UseInterceptors(Multipart([{ name: 'image', maxCount: 1 }]))
  @ApiOperation({
    summary: '1:N / M:N search: one result per searched face; an empty `matches` list means no match',
  })
  @ApiConsumes('multipart/form-data', 'application/json')
  @ApiBody({ schema: openApiBody(SearchBody, ['image']) })
  async search(
    @AppId() appId: string,
    @UploadedFiles() files: Files | undefined,
    @Body(new ZodPipe(SearchBody)) body: z.output<typeof SearchBody>,
    @Res({ passthrough: true }) res: Response,
  ) {
    const image = requireImage(
      imageFrom(files, body, 'image', 'image_base64', this.config.maxImageBytes),
      'image',
      'image_base64',
    );
    return withServerTiming(
      res,
      (timings) =>
        this.recognition.search(
          appId,
          {
            image,
            group_ids: body.group_ids,
            top_k: body.top_k,
            match_threshold: body.match_threshold,
            max_faces: body.max_faces,
          },
          timings,
        ),
      this.record('search'),
    );
  }
}
