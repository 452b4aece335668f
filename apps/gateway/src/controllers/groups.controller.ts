import { LibraryService } from '@facesearch/core';
import { Body, Controller, Delete, Get, Param, Patch, Post, Query } from '@nestjs/common';
import { ApiBody, ApiOperation, ApiQuery, ApiSecurity, ApiTags } from '@nestjs/swagger';
import type { z } from 'zod';
import { AppId } from '../auth/auth';
import {
  CopyUserBody,
  CreateGroupBody,
  openApiBody,
  PageQuery,
  type PageQueryT,
  UpdateUserBody,
} from '../dtos/schemas';
import { faceView, groupView, pageView, userView } from '../dtos/views';
import { ZodPipe } from '../http/zod.pipe';

@ApiTags('groups')
@ApiSecurity('bearer')
@Controller('v1/groups')
export class GroupsController {
  constructor(private readonly library: LibraryService) {}

  @Post()
  @ApiOperation({ summary: 'Create a group' })
  @ApiBody({ schema: openApiBody(CreateGroupBody) })
  async create(@AppId() appId: string, @Body(new ZodPipe(CreateGroupBody)) body: z.output<typeof CreateGroupBody>) {
    return groupView(await this.library.createGroup(appId, body.group_id));
  }

  @Get()
  @ApiOperation({ summary: 'List groups (paginated)' })
  @ApiQuery({ name: 'limit', required: false, type: Number })
  @ApiQuery({ name: 'cursor', required: false, type: String })
  async list(@AppId() appId: string, @Query(new ZodPipe(PageQuery)) page: PageQueryT) {
    return pageView(await this.library.listGroups(appId, page), groupView);
  }

  @Get(':group_id')
  @ApiOperation({ summary: 'Get a group' })
  async get(@AppId() appId: string, @Param('group_id') groupId: string) {
    return groupView(await this.library.getGroup(appId, groupId));
  }

  @Delete(':group_id')
  @ApiOperation({ summary: 'Delete a group with its users, faces, vectors and images' })
  async remove(@AppId() appId: string, @Param('group_id') groupId: string) {
    const { deleted_faces } = await this.library.deleteGroup(appId, groupId);
    return { group_id: groupId, deleted_faces };
  }

  @Get(':group_id/users')
  @ApiTags('users')
  @ApiOperation({ summary: 'List the users of a group (paginated)' })
  @ApiQuery({ name: 'limit', required: false, type: Number })
  @ApiQuery({ name: 'cursor', required: false, type: String })
  async listUsers(
    @AppId() appId: string,
    @Param('group_id') groupId: string,
    @Query(new ZodPipe(PageQuery)) page: PageQueryT,
  ) {
    return pageView(await this.library.listUsers(appId, groupId, page), userView);
  }

  @Get(':group_id/users/:user_id')
  @ApiTags('users')
  @ApiOperation({ summary: 'Get a user with its faces' })
  async getUser(@AppId() appId: string, @Param('group_id') groupId: string, @Param('user_id') userId: string) {
    const user = await this.library.getUser(appId, groupId, userId);
    const faces = await this.library.listFaces(appId, groupId, userId);
    return { ...userView(user), faces: faces.map(faceView) };
  }

  @Patch(':group_id/users/:user_id')
  @ApiTags('users')
  @ApiOperation({ summary: "Update a user's user_info" })
  @ApiBody({ schema: openApiBody(UpdateUserBody) })
  async updateUser(
    @AppId() appId: string,
    @Param('group_id') groupId: string,
    @Param('user_id') userId: string,
    @Body(new ZodPipe(UpdateUserBody)) body: z.output<typeof UpdateUserBody>,
  ) {
    return userView(await this.library.updateUser(appId, groupId, userId, body.user_info));
  }

  @Delete(':group_id/users/:user_id')
  @ApiTags('users')
  @ApiOperation({ summary: 'Delete a user with its faces, vectors and images' })
  async deleteUser(@AppId() appId: string, @Param('group_id') groupId: string, @Param('user_id') userId: string) {
    const { deleted_faces } = await this.library.deleteUser(appId, groupId, userId);
    return { group_id: groupId, user_id: userId, deleted_faces };
  }

  @Post(':group_id/users/:user_id/copy')
  @ApiTags('users')
  @ApiOperation({ summary: 'Copy a user and its faces into another group (new face ids)' })
  @ApiBody({ schema: openApiBody(CopyUserBody) })
  async copyUser(
    @AppId() appId: string,
    @Param('group_id') groupId: string,
    @Param('user_id') userId: string,
    @Body(new ZodPipe(CopyUserBody)) body: z.output<typeof CopyUserBody>,
  ) {
    const { user, faces } = await this.library.copyUser(appId, groupId, userId, body.to_group_id);
    return { ...userView(user), faces: faces.map(faceView) };
  }
}
