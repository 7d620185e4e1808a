import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import { loadQuotaProto } from './load-quota-proto.ts';

describe('loadQuotaProto', () => {
  const { service } = loadQuotaProto().QuotaService;

  it('leaves protobufjs without Long, so int64 fields are read and written as numbers', () => {
    expect((protobuf.util as { Long: unknown }).Long).toBeFalsy();
  });

  it('decodes int64 fields as exact numbers', () => {
    const { responseSerialize, responseDeserialize } = service.Session;
    const expiresAtMs = 1_900_000_000_123; // above 2^32, as every epoch time in ms is
    const encoded = responseSerialize({
      id: Number.MAX_SAFE_INTEGER,
      acquire: {
        lease_id: 'llm/p|x',
        expires_at_ms: expiresAtMs,
        lease_timeout_ms: 120_000,
        waited_ms: 0,
        reserved: { requests: 1, input_tokens: 2 ** 40, output_tokens: 0, total_tokens: 2 ** 40 },
      },
    });
    const decoded = responseDeserialize(encoded);
    expect(decoded.id).toBe(Number.MAX_SAFE_INTEGER);
    expect(decoded.acquire?.expires_at_ms).toBe(expiresAtMs);
    expect(typeof decoded.acquire?.expires_at_ms).toBe('number');
    expect(decoded.acquire?.reserved?.input_tokens).toBe(2 ** 40);
  });

  it('reads a negative int64 back as the same number', () => {
    const { requestSerialize, requestDeserialize } = service.Acquire;
    const decoded = requestDeserialize(requestSerialize({ provider: 'p', max_wait_ms: -5 }));
    expect(decoded.max_wait_ms).toBe(-5);
  });
});
