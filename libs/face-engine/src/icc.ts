/**
 * Whether an embedded ICC profile describes sRGB itself: an RGB matrix/TRC profile whose colorants and tone curves
 * are sRGB's. Decoding such a photo through the profile changes no pixel (libvips converts sRGB to sRGB: identical
 * bytes on the test photos), but the conversion runs through a float colour space and cost ~17 ms per 0.7
 * megapixel here, two thirds of the decode (BENCHMARKS.md, session 9). Many photos embed one: cameras and editors
 * write "sRGB IEC61966-2.1", web services a compact sRGB ("c2"). Any other profile (Display P3, Adobe RGB, a
 * profile with lookup tables, one this reader cannot parse) answers false and keeps the conversion.
 *
 * Layout per ICC.1:2010: header 128 bytes (data colour space at 16, PCS at 20), tag count at 128, then 12-byte
 * entries (signature, offset, size); XYZType = 'XYZ ' + 4 reserved + s15Fixed16 X, Y, Z; curveType = 'curv' +
 * 4 + count + uint16 entries; parametricCurveType = 'para' + 4 + function type (uint16) + 2 + s15Fixed16 params.
 */
export function isSrgbProfile(icc: Uint8Array | undefined): boolean {
  if (!icc || icc.length < 132) return false;
  try {
    const view = new DataView(icc.buffer, icc.byteOffset, icc.byteLength);
    const text = (at: number) => String.fromCharCode(icc[at], icc[at + 1], icc[at + 2], icc[at + 3]);
    if (text(16) !== 'RGB ' || text(20) !== 'XYZ ') return false;
    const tags = new Map<string, number>();
    const count = view.getUint32(128);
    if (count > 1000 || 132 + count * 12 > icc.length) return false;
    for (let i = 0; i < count; i++) tags.set(text(132 + i * 12), view.getUint32(136 + i * 12));
    // Lookup-table transforms take precedence over the matrix in a colour engine: not judged here.
    if ([...tags.keys()].some((sig) => /^(A2B|B2A|D2B|B2D)/.test(sig))) return false;

    for (const [sig, expected] of Object.entries(SRGB_COLORANTS)) {
      const at = tags.get(sig);
      if (at === undefined || text(at) !== 'XYZ ') return false;
      for (let k = 0; k < 3; k++) {
        if (Math.abs(view.getInt32(at + 8 + 4 * k) / 65536 - expected[k]) > COLORANT_TOLERANCE) return false;
      }
    }
    for (const sig of ['rTRC', 'gTRC', 'bTRC']) {
      const at = tags.get(sig);
      if (at === undefined) return false;
      const curve = toneCurve(view, at, text(at));
      if (!curve || TRC_PROBES.some((x) => Math.abs(curve(x) - srgbToLinear(x)) > TRC_TOLERANCE)) return false;
    }
    return true;
  } catch {
    return false; // a truncated or malformed profile: leave it to the decoder
  }
}

/** sRGB's primaries adapted to the D50 profile connection space, as every sRGB profile stores them. */
const SRGB_COLORANTS: Record<string, [number, number, number]> = {
  rXYZ: [0.4361, 0.2225, 0.0139],
  gXYZ: [0.3851, 0.7169, 0.0971],
  bXYZ: [0.1431, 0.0606, 0.7141],
};
// s15Fixed16 rounding differs between writers by ~0.0003 (seen: 0.4359 vs 0.4361).
const COLORANT_TOLERANCE = 0.002;
const TRC_PROBES = [0.02, 0.05, 0.1, 0.25, 0.5, 0.75, 0.95];
// A 1024-entry sRGB table is within 0.0001; a pure gamma 2.2 curve is 0.0026-0.0037 away at 0.05-0.5, so it keeps
// the conversion.
const TRC_TOLERANCE = 0.002;

function srgbToLinear(x: number): number {
  return x <= 0.04045 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4;
}

function toneCurve(view: DataView, at: number, type: string): ((x: number) => number) | undefined {
  if (type === 'curv') {
    const n = view.getUint32(at + 8);
    if (n === 0) return (x) => x;
    if (n === 1) {
      const gamma = view.getUint16(at + 12) / 256;
      return (x) => x ** gamma;
    }
    const table = Array.from({ length: n }, (_, i) => view.getUint16(at + 12 + 2 * i) / 65535);
    return (x) => {
      const p = x * (n - 1);
      const i = Math.min(n - 2, Math.floor(p));
      return table[i] + (table[i + 1] - table[i]) * (p - i);
    };
  }
  if (type === 'para') {
    const kind = view.getUint16(at + 8);
    const arity = [1, 3, 4, 5, 7][kind];
    if (arity === undefined) return undefined;
    const [g, a = 1, b = 0, c = 0, d = 0, e = 0, f = 0] = Array.from(
      { length: arity },
      (_, i) => view.getInt32(at + 12 + 4 * i) / 65536,
    );
    if (kind === 0) return (x) => x ** g;
    if (kind === 1) return (x) => (x >= -b / a ? (a * x + b) ** g : 0);
    if (kind === 2) return (x) => (x >= -b / a ? (a * x + b) ** g + c : c);
    if (kind === 3) return (x) => (x >= d ? (a * x + b) ** g : c * x);
    return (x) => (x >= d ? (a * x + b) ** g + e : c * x + f);
  }
  return undefined;
}
