/**
 * An open-loop load generator in a process of its own, for bench:quota's open-loop rows: their
 * p99 is then the service's and the machine's, not the bench process's, whose heap carries every
 * earlier row (in-process engines, closed loops at tens of thousands of pairs/s) and whose major
 * collections fell inside the open-loop windows.
 *
 *   node open-loop-process.ts --kind session|unary|relay|envoy --target HOST:PORT --rate N
 *     --warm-up SECONDS --seconds SECONDS --runs N
 *
 * A pair is an acquire+settle (session, unary: the quota service), two relayed PINGs (relay:
 * redis-relay.ts) or two ShouldRateLimit calls (envoy: envoy-ratelimit.ts). After a warm-up at the
 * rate, prints one JSON line: the Measure of each run.
 */
import { parseArgs } from 'node:util';
import { createQuotaClient } from '../../common/grpc/quota-client.ts';
import { EnvoyRatelimitClient } from './envoy-ratelimit.ts';
import { openLoop, pair, twoCalls, type Measure } from './load-loops.ts';
import { RelayClient } from './redis-relay.ts';

export const OPEN_LOOP_KINDS = ['session', 'unary', 'relay', 'envoy'] as const;
export type OpenLoopKind = (typeof OPEN_LOOP_KINDS)[number];

interface PairClient {
  run: () => Promise<number>;
  close: () => void;
}

async function connect(kind: OpenLoopKind, target: string): Promise<PairClient> {
  switch (kind) {
    case 'session':
    case 'unary': {
      const client = createQuotaClient({ target, transport: kind });
      return { run: () => pair(client), close: () => client.close() };
    }
    case 'relay': {
      const client = await RelayClient.connect(Number(target.slice(target.lastIndexOf(':') + 1)));
      return { run: twoCalls(() => client.call()), close: () => client.close() };
    }
    case 'envoy': {
      const client = new EnvoyRatelimitClient(target);
      return { run: twoCalls(() => client.call()), close: () => client.close() };
    }
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      kind: { type: 'string' },
      target: { type: 'string' },
      rate: { type: 'string' },
      'warm-up': { type: 'string' },
      seconds: { type: 'string' },
      runs: { type: 'string' },
    },
  });
  const kind = values.kind as OpenLoopKind;
  if (!OPEN_LOOP_KINDS.includes(kind)) throw new Error(`--kind: one of ${OPEN_LOOP_KINDS.join(', ')}`);
  const number = (name: keyof typeof values) => {
    const value = Number(values[name]);
    if (!Number.isFinite(value) || value < 0) throw new Error(`--${name}: a number is required`);
    return value;
  };
  if (!values.target) throw new Error('--target: host:port is required');
  const [rate, warmUp, seconds, count] = [
    number('rate'),
    number('warm-up'),
    number('seconds'),
    number('runs'),
  ];
  const client = await connect(kind, values.target);
  try {
    await openLoop(client.run, rate, warmUp);
    const runs: Measure[] = [];
    for (let i = 0; i < count; i++) runs.push(await openLoop(client.run, rate, seconds));
    console.log(JSON.stringify(runs));
  } finally {
    client.close();
  }
}

await main();
