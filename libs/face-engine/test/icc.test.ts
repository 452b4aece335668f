import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeImage, inspectImage, isSrgbProfile } from '@facesearch/face-engine';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { HAS_TESTDATA, TESTDATA, testdata } from './helpers';

/** A 64x48 colourful JPEG, with libvips' own profile embedded when `profile` is given. */
async function photo(profile?: 'srgb' | 'p3'): Promise<Buffer> {
  const raw = Buffer.alloc(64 * 48 * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = (i * 37) % 256;
  const image = sharp(raw, { raw: { width: 64, height: 48, channels: 3 } });
  return (profile ? image.withIccProfile(profile) : image).jpeg({ quality: 95 }).toBuffer();
}

async function profileOf(jpeg: Buffer): Promise<Buffer> {
  const { icc } = await sharp(jpeg).metadata();
  if (!icc) throw new Error('no profile embedded');
  return Buffer.from(icc);
}

/** Where a tag's data starts in a profile. */
function tagOffset(icc: Buffer, signature: string): number {
  const count = icc.readUInt32BE(128);
  for (let i = 0; i < count; i++) {
    if (icc.toString('latin1', 132 + i * 12, 136 + i * 12) === signature) return icc.readUInt32BE(136 + i * 12);
  }
  throw new Error(`no ${signature} tag`);
}

/** A photo decoded as inspected and with the other answer to "is its profile sRGB's own?" (the decode sizes alike). */
async function decodedBothWays(bytes: Buffer, maxSide?: number) {
  const header = await inspectImage(bytes);
  const [asInspected, flipped] = await Promise.all(
    [header, { ...header, srgbProfile: !header.srgbProfile }].map(
      async (h) => (await decodeImage(bytes, undefined, { header: h, maxSide })).working.data,
    ),
  );
  return { srgbProfile: header.srgbProfile, same: asInspected.equals(flipped) };
}

describe('embedded sRGB profiles (icc.ts)', () => {
  it('decodes a photo with an sRGB profile without the conversion, to the same pixels', async () => {
    expect(await decodedBothWays(await photo('srgb'))).toEqual({ srgbProfile: true, same: true });
  });

  it('keeps the conversion for a Display P3 photo, where it changes the pixels', async () => {
    expect(await decodedBothWays(await photo('p3'))).toEqual({ srgbProfile: false, same: false });
    expect((await inspectImage(await photo())).srgbProfile).toBe(false); // no profile: nothing to skip
  });

  it('answers false for other colorants, another tone curve, lookup tables and malformed profiles', async () => {
    const srgb = await profileOf(await photo('srgb'));
    expect(isSrgbProfile(srgb)).toBe(true);

    const otherRed = Buffer.from(srgb);
    otherRed.writeInt32BE(Math.round(0.6097 * 65536), tagOffset(otherRed, 'rXYZ') + 8); // Adobe RGB's red X
    expect(isSrgbProfile(otherRed)).toBe(false);

    const gamma22 = Buffer.from(srgb);
    const trc = tagOffset(gamma22, 'gTRC');
    gamma22.write('curv', trc, 'latin1');
    gamma22.writeUInt32BE(1, trc + 8);
    gamma22.writeUInt16BE(Math.round(2.2 * 256), trc + 12);
    expect(isSrgbProfile(gamma22)).toBe(false);

    const withTables = Buffer.from(srgb);
    withTables.write('A2B0', 132, 'latin1'); // the first tag renamed: a lookup-table profile
    expect(isSrgbProfile(withTables)).toBe(false);

    expect(isSrgbProfile(srgb.subarray(0, 200))).toBe(false);
    expect(isSrgbProfile(Buffer.alloc(600, 0xff))).toBe(false);
    expect(isSrgbProfile(undefined)).toBe(false);
  });
});

describe.skipIf(!HAS_TESTDATA)('embedded profiles of the real photos in ../shared/testdata', () => {
  it('skips the conversion only where it changes no pixel', async () => {
    const rows = readFileSync(join(TESTDATA, 'faces.tsv'), 'utf8').trim().split('\n').slice(1);
    const seen = { srgb: 0, other: 0 };
    for (const [path] of rows.map((line) => line.split('\t'))) {
      const bytes = testdata(path);
      if (!(await sharp(bytes).metadata()).icc) continue;
      const { srgbProfile, same } = await decodedBothWays(bytes, 256);
      // sRGB: skipping gives the converted pixels; any other profile: the conversion does change them.
      expect(same, path).toBe(srgbProfile);
      seen[srgbProfile ? 'srgb' : 'other']++;
    }
    expect(seen.srgb).toBeGreaterThan(0);
    expect(seen.other).toBeGreaterThan(0);
  });
});
