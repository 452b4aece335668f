import { ConfigError, loadConfig } from '@facesearch/common';
import { describe, expect, it } from 'vitest';

describe('Qdrant HNSW configuration', () => {
  it('leaves the graph and search ef to the adapter when unset or empty', () => {
    for (const env of [
      {},
      { QDRANT_HNSW_M: '', QDRANT_HNSW_EF_CONSTRUCT: ' ', QDRANT_SEARCH_EF: '', QDRANT_FULL_SCAN_THRESHOLD_KB: '' },
    ]) {
      const c = loadConfig(env);
      expect([c.qdrantHnswM, c.qdrantHnswEfConstruct, c.qdrantSearchEf, c.qdrantFullScanThresholdKb]).toEqual([
        null,
        null,
        null,
        null,
      ]);
    }
  });

  it('reads whole numbers (m 0: no graph)', () => {
    const c = loadConfig({
      QDRANT_HNSW_M: '48',
      QDRANT_HNSW_EF_CONSTRUCT: '400',
      QDRANT_SEARCH_EF: ' 512 ',
      QDRANT_FULL_SCAN_THRESHOLD_KB: '200000',
    });
    expect([c.qdrantHnswM, c.qdrantHnswEfConstruct, c.qdrantSearchEf, c.qdrantFullScanThresholdKb]).toEqual([
      48, 400, 512, 200_000,
    ]);
    expect(loadConfig({ QDRANT_HNSW_M: '0' }).qdrantHnswM).toBe(0);
    expect(() => loadConfig({ QDRANT_HNSW_M: '513' })).toThrow(/QDRANT_HNSW_M: expected an integer 0-512, got '513'/);
  });

  it('names every bad variable', () => {
    for (const bad of ['0', '-3', '1.5', 'abc', '1e3']) {
      const err = (() => {
        try {
          loadConfig({
            QDRANT_HNSW_M: bad,
            QDRANT_HNSW_EF_CONSTRUCT: bad,
            QDRANT_SEARCH_EF: bad,
            QDRANT_FULL_SCAN_THRESHOLD_KB: bad,
          });
        } catch (e) {
          return e;
        }
      })();
      expect(err).toBeInstanceOf(ConfigError);
      const problems = (err as ConfigError).problems;
      // m 0 is a collection without a graph (the adapter's default).
      if (bad !== '0') expect(problems).toContain(`QDRANT_HNSW_M: expected an integer 0-512, got '${bad}'`);
      else expect(problems.some((p) => p.startsWith('QDRANT_HNSW_M'))).toBe(false);
      expect(problems).toContain(`QDRANT_HNSW_EF_CONSTRUCT: expected an integer 4-100000, got '${bad}'`);
      expect(problems).toContain(`QDRANT_SEARCH_EF: expected an integer 1-100000, got '${bad}'`);
      expect(problems).toContain(`QDRANT_FULL_SCAN_THRESHOLD_KB: expected an integer 10-100000000, got '${bad}'`);
    }
    expect(() => loadConfig({ QDRANT_HNSW_EF_CONSTRUCT: '2' })).toThrow(
      /QDRANT_HNSW_EF_CONSTRUCT: expected an integer 4-100000, got '2'/,
    );
  });

  it('reads QDRANT_QUANTIZATION (none or int8, unset: the adapter decides) and names a bad value', () => {
    expect(loadConfig({}).qdrantQuantization).toBeNull();
    expect(loadConfig({ QDRANT_QUANTIZATION: 'INT8' }).qdrantQuantization).toBe('int8');
    expect(loadConfig({ QDRANT_QUANTIZATION: 'none' }).qdrantQuantization).toBe('none');
    expect(() => loadConfig({ QDRANT_QUANTIZATION: 'binary' })).toThrow(
      /QDRANT_QUANTIZATION: expected one of none\|int8, got 'binary'/,
    );
  });

  it('reads QDRANT_VECTOR_DATATYPE (float32 or float16, unset: float32) and names a bad value', () => {
    expect(loadConfig({}).qdrantVectorDatatype).toBeNull();
    expect(loadConfig({ QDRANT_VECTOR_DATATYPE: 'Float16' }).qdrantVectorDatatype).toBe('float16');
    expect(loadConfig({ QDRANT_VECTOR_DATATYPE: 'float32' }).qdrantVectorDatatype).toBe('float32');
    expect(() => loadConfig({ QDRANT_VECTOR_DATATYPE: 'uint8' })).toThrow(
      /QDRANT_VECTOR_DATATYPE: expected one of float32\|float16, got 'uint8'/,
    );
  });
});
