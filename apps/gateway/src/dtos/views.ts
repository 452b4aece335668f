/** Response shapes: records without internal fields (app_id, blob keys). */
import type { FaceRecord, GroupRecord, Page, UserRecord } from '@facesearch/common';

export const groupView = (g: GroupRecord) => ({ group_id: g.group_id, created_at: g.created_at });

export const userView = (u: UserRecord) => ({
  group_id: u.group_id,
  user_id: u.user_id,
  user_info: u.user_info,
  created_at: u.created_at,
  updated_at: u.updated_at,
});

export const faceView = (f: FaceRecord) => ({
  face_id: f.face_id,
  group_id: f.group_id,
  user_id: f.user_id,
  box: f.box,
  landmarks: f.landmarks,
  quality: f.quality,
  model_id: f.model_id,
  created_at: f.created_at,
});

export function pageView<T, V>(page: Page<T>, map: (t: T) => V): Page<V> {
  return { items: page.items.map(map), next_cursor: page.next_cursor };
}

/** Content type of stored images, from their first bytes. */
export function sniffImageType(b: Uint8Array): string {
  if (b[0] === 0xff && b[1] === 0xd8) return 'image/jpeg';
  if (b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47) return 'image/png';
  if (b[0] === 0x47 && b[1] === 0x49 && b[2] === 0x46) return 'image/gif';
  if (b[0] === 0x52 && b[1] === 0x49 && b[2] === 0x46 && b[3] === 0x46 && b[8] === 0x57) return 'image/webp';
  if ((b[0] === 0x49 && b[1] === 0x49) || (b[0] === 0x4d && b[1] === 0x4d)) return 'image/tiff';
  if (b[4] === 0x66 && b[5] === 0x74 && b[6] === 0x79 && b[7] === 0x70) return 'image/avif';
  return 'application/octet-stream';
}
